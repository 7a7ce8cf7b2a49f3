"""ORM: erasure requests and the training samples each one names."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import Enum, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, validates

from app.core.db import Base, utcnow

REASON_LENGTH = 1024
"""The longest `status_reason` stored; a longer one is clipped (`clip_reason`)."""


def clip_reason(reason: str | None) -> str | None:
    """`reason` as stored: at most REASON_LENGTH characters, a clipped one ending in '…'.
    A fan-out parent failed on 20 models lists 20 reasons (each child keeps its own), and
    an error message can be long: PostgreSQL refuses what does not fit, and the failing
    transaction was the one that failed the job and its request."""
    if reason is None or len(reason) <= REASON_LENGTH:
        return reason
    return reason[: REASON_LENGTH - 1] + "…"


class RequestStatus(enum.StrEnum):
    received = "received"
    queued = "queued"
    running = "running"
    completed = "completed"
    canceled = "canceled"
    denied = "denied"
    failed = "failed"


FINAL_STATUSES = frozenset(
    {RequestStatus.completed, RequestStatus.canceled, RequestStatus.denied, RequestStatus.failed}
)


class ErasureRequest(Base):
    __tablename__ = "erasure_requests"
    __table_args__ = (
        Index("ix_erasure_requests_model_status", "model_id", "status"),
        Index("ix_erasure_requests_received", "received_at", "id"),
        Index("ix_erasure_requests_parent", "parent_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    subject_request_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    """The portal's id; None on the children of a fan-out (their parent holds it)."""
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id"))
    """None on a fan-out parent (a subject request naming no model: `parents.py`)."""
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("erasure_requests.id"))
    """The fan-out parent of a child request (one child per model holding the subject)."""
    selector_digest: Mapped[str | None] = mapped_column(String(64))
    """A fan-out parent's SHA-256 over its subjects' sorted keyed hashes (never a raw
    identity): a repeated subject_request_id is the same request only with the same one."""
    regulation: Mapped[str] = mapped_column(String(32))
    status: Mapped[RequestStatus] = mapped_column(
        Enum(RequestStatus, native_enum=False, length=16, validate_strings=True)
    )
    status_reason: Mapped[str | None] = mapped_column(String(REASON_LENGTH))
    submitted_time: Mapped[datetime]
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    due_at: Mapped[datetime]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    completed_at: Mapped[datetime | None]
    job_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id"))
    result_version: Mapped[int | None]
    attempts: Mapped[int] = mapped_column(default=0)
    """Jobs that tried this request and failed."""
    sample_count: Mapped[int]
    callback_urls: Mapped[list[str]]
    client: Mapped[str] = mapped_column(String(128))
    extended_at: Mapped[datetime | None]
    """When the deadline was extended (Art. 12(3): once, by at most two months)."""
    extension_months: Mapped[int | None]
    extension_reason: Mapped[str | None] = mapped_column(String(1024))
    denial_ground: Mapped[str | None] = mapped_column(String(64))
    """The Art. 17(3) (or Art. 12(5)) ground of a denial; the reason is `status_reason`."""

    @validates("status_reason")
    def _clip(self, _key: str, reason: str | None) -> str | None:
        return clip_reason(reason)


class ErasureRequestSample(Base):
    __tablename__ = "erasure_request_samples"

    request_id: Mapped[str] = mapped_column(ForeignKey("erasure_requests.id"), primary_key=True)
    sample_id: Mapped[str] = mapped_column(String(256), primary_key=True)
