"""Jobs as the API reads them. The lifecycle lives beside this module: `scheduling`
(batch requests, make a model's job), `attempt` (claim, heartbeat, fail), `reaper`
(stale heartbeats) and `flows` (publish a job's version across domains)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from app.core.errors import NotFound
from app.jobs.models import Job


def get_job(*, session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job
