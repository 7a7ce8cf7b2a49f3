"""The reaper: requeue (or fail) jobs whose worker stopped beating its heartbeat, and
re-dispatch queued jobs nobody picked up. Run by housekeeping (`app.housekeeping`)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.core.config import Settings
from app.core.db import utcnow
from app.jobs.attempt import fail_attempt
from app.jobs.models import Job, JobStatus
from app.jobs.scheduling import JOB_QUEUED, schedule_all


def reap(*, session: Session, settings: Settings, now: datetime | None = None) -> list[str]:
    """Requeue (or fail) running jobs whose heartbeat is stale; return queued job ids that
    should be dispatched again because no worker picked them up."""
    now = now or utcnow()
    stale = now - timedelta(seconds=settings.heartbeat_timeout_s)
    for job in session.scalars(
        select(Job).where(Job.status == JobStatus.running, Job.heartbeat_at < stale)
    ).all():
        fail_attempt(
            session=session,
            job_id=job.id,
            attempt=job.attempts,
            reason=f"worker {job.worker} lost: no heartbeat since "
            f"{job.heartbeat_at:%Y-%m-%dT%H:%M:%SZ}",
            settings=settings,
            actor="system:reaper",
        )
    schedule_all(session=session, settings=settings)
    redo = list(
        session.scalars(
            select(Job.id).where(Job.status == JobStatus.queued, Job.heartbeat_at < stale)
        )
    )
    for job_id in redo:
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=now))
        JOB_QUEUED.note(session, job_id)
    return redo
