"""ORM: which erasure requests arrived through OpenDSR (their callbacks speak OpenDSR)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class OpenDSRRequest(Base):
    __tablename__ = "opendsr_requests"

    request_id: Mapped[str] = mapped_column(ForeignKey("erasure_requests.id"), primary_key=True)
    subject_request_type: Mapped[str] = mapped_column(String(32))
    api_version: Mapped[str] = mapped_column(String(16))
    processor_domain: Mapped[str] = mapped_column(String(253))
    """The domain it was received under: the key of `extensions` in its status bodies."""
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
