from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from app.jobs.models import JobStatus


class JobRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    model: str
    kind: str = "unlearn"
    """`unlearn` (an erasure run) or `register` (a model's registration)."""
    status: JobStatus
    phase: str
    progress: float
    """Percent, 0–100."""
    attempts: int
    max_attempts: int
    base_version: int | None
    result_version: int | None
    method: str | None
    metrics: dict[str, Any] | None
    error: str | None
    request_ids: list[UUID]
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
