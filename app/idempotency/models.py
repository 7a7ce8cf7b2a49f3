"""ORM: stored responses of POSTs made with an `Idempotency-Key` header."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class IdempotencyKey(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_keys_expires_at", "expires_at"),)

    client_id: Mapped[int] = mapped_column(primary_key=True)
    """The API key that sent it: keys are scoped per client, so clients cannot collide."""
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    fingerprint: Mapped[str] = mapped_column(String(64))
    """HMAC-sha256 (secret key) over method, path and body: a reuse with another body is
    refused."""
    state: Mapped[str] = mapped_column(String(16))
    """`processing` while an attempt holds the lease, then `completed`."""
    lease: Mapped[int] = mapped_column(default=1, server_default="1")
    """Number of the attempt holding the key; a retry after `lease_until` takes it over."""
    lease_until: Mapped[datetime | None]
    status_code: Mapped[int | None]
    headers: Mapped[dict[str, Any] | None]
    body: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
