"""ORM: a job is one unlearning run on one model, from one base version to one new version."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import Enum, ForeignKey, Index, String, text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


ACTIVE = ("queued", "running")
UNLEARN, REGISTER = "unlearn", "register"
"""Job kinds: an unlearning run (base version -> new version), or a model's registration
(checks its checkpoint and data, measures and publishes version 1; app.jobs.registration)."""


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # At most one active job per model, enforced by the database: versions form a chain.
        Index(
            "uq_jobs_one_active_per_model",
            "model_id",
            unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
        Index("ix_jobs_status_heartbeat", "status", "heartbeat_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    status: Mapped[JobStatus] = mapped_column(
        Enum(JobStatus, native_enum=False, length=16, validate_strings=True)
    )
    kind: Mapped[str] = mapped_column(String(16), default=UNLEARN, server_default=UNLEARN)
    phase: Mapped[str] = mapped_column(String(64), default="queued")
    progress: Mapped[float] = mapped_column(default=0.0)
    """0–100 percent."""
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    base_version: Mapped[int | None]
    result_version: Mapped[int | None]
    method: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(String(4096))
    worker: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
