"""ORM: model webhooks, the callback outbox and every delivery attempt."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"


class DeliveryProtocol(enum.StrEnum):
    webhooks = "webhooks"
    """Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature` (HMAC)."""
    opendsr = "opendsr"
    """OpenDSR 2.0 status callback body, plus `X-OpenDSR-*` headers (and the HMAC headers)."""


class ModelWebhook(Base):
    """A target an ML team registered for a model's events. Deleting one keeps the row
    (deleted_at) so the delivery history stays readable."""

    __tablename__ = "model_webhooks"
    __table_args__ = (Index("ix_model_webhooks_model", "model_id", "deleted_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]]
    description: Mapped[str | None] = mapped_column(String(256))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class CallbackDelivery(Base):
    """One message to one target URL (the outbox row). Written in the transaction that
    changed what it reports; sent after commit; its id is the `webhook-id` on every try."""

    __tablename__ = "callback_deliveries"
    __table_args__ = (
        Index("ix_callback_deliveries_due", "status", "next_attempt_at"),
        Index("ix_callback_deliveries_request", "request_id", "created_at"),
        Index("ix_callback_deliveries_webhook", "webhook_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event: Mapped[str] = mapped_column(String(64))
    protocol: Mapped[DeliveryProtocol] = mapped_column(
        Enum(DeliveryProtocol, native_enum=False, length=16, validate_strings=True)
    )
    request_id: Mapped[str | None] = mapped_column(ForeignKey("erasure_requests.id"))
    webhook_id: Mapped[str | None] = mapped_column(ForeignKey("model_webhooks.id"))
    sequence: Mapped[int | None]
    """A request's events are numbered 1, 2, ... (the same number for each of its targets);
    the sender sends one to a target only once every earlier one there is delivered or
    given up."""
    url: Mapped[str] = mapped_column(String(2048))
    body: Mapped[str] = mapped_column(Text)
    """The exact JSON bytes sent on every attempt (only the timestamp header changes)."""
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, native_enum=False, length=16, validate_strings=True)
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(String(1024))


class CallbackAttempt(Base):
    __tablename__ = "callback_attempts"
    __table_args__ = (Index("ix_callback_attempts_delivery", "delivery_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("callback_deliveries.id"))
    number: Mapped[int]
    attempted_at: Mapped[datetime]
    duration_ms: Mapped[int]
    status_code: Mapped[int | None]
    """The target's HTTP status; None when no response came (error says why)."""
    error: Mapped[str | None] = mapped_column(String(1024))
