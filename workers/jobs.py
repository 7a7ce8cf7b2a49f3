"""One entry point for every job id a dispatcher hands over: an erasure job goes to the
pipeline (`workers.pipeline.run_job`), a registration to `workers.registration`."""

from __future__ import annotations

from sqlalchemy import select

from app.core.db import session_scope
from app.jobs.models import REGISTER, Job
from workers.pipeline import run_job
from workers.registration import run_registration
from workers.runtime import Runtime


def run(job_id: str, rt: Runtime) -> str:
    """Run the job by its kind; what happened (see the two runners)."""
    with session_scope(rt.session_factory, None) as s:
        kind = s.scalar(select(Job.kind).where(Job.id == job_id))
    if kind == REGISTER:
        return run_registration(job_id, rt)
    return run_job(job_id, rt)
