"""ORM: API keys, stored as hashes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    """Public lookup part of the key; the secret part is only stored hashed."""
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]]
    models: Mapped[list[str] | None]
    """Model names this key may act on; None = all."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
