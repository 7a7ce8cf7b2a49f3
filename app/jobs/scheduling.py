"""Scheduling: batch a model's received requests and make sure its queued ones have a job.

Only one job per model can be queued or running (a partial unique index), so a model's
versions form a chain. A job takes all of the model's queued requests when it is claimed
(`app.jobs.attempt`); requests that arrive later wait for the next job, which the publish
flow (or a failure) schedules once the job ends.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.after_commit import Dispatcher, Signal
from app.core.config import Settings
from app.core.db import utcnow
from app.erasure_requests import lifecycle as requests
from app.erasure_requests.models import ErasureRequest, RequestStatus
from app.jobs.models import ACTIVE, Job, JobStatus
from app.registry.models import READY, Model

log = logging.getLogger("lethe.dispatch")

SYSTEM = "system:scheduler"


def _dispatch(dispatcher: Dispatcher, job_ids: Sequence[str]) -> None:
    for job_id in job_ids:
        try:
            dispatcher.dispatch(job_id)
        except Exception:  # the reaper re-dispatches queued jobs; never fail a commit here
            log.exception("dispatch of job %s failed", job_id)


JOB_QUEUED = Signal("job_queued", send=_dispatch)
"""Noted (with the job id) by a transaction that queued a job: after its commit the job
goes to the session's dispatcher."""

_MODEL_STATUS = select(Model.status).where(Model.id == bindparam("model_id"))
_ACTIVE_JOB_ID = select(Job.id).where(Job.model_id == bindparam("model_id"), Job.status.in_(ACTIVE))


def schedule_model(
    *,
    session: Session,
    model_id: int,
    settings: Settings,
    now: datetime | None = None,
    stragglers: bool = True,
) -> Job | None:
    """Batch the model's received requests (once the window has passed) and make sure a job
    exists for its queued ones. Returns the job created, if any.

    Without a window requests are stored `queued`; `received` ones are then stragglers of
    an earlier window, moved here unless `stragglers=False` (the scheduler woken by a
    submit leaves them to the periodic tick)."""
    now = now or utcnow()
    ready = stragglers
    if settings.batch_window_s > 0:
        oldest = session.scalar(
            select(func.min(ErasureRequest.received_at)).where(
                ErasureRequest.model_id == model_id,
                ErasureRequest.status == RequestStatus.received,
            )
        )
        ready = oldest is not None and oldest <= now - timedelta(seconds=settings.batch_window_s)
    moved = requests.batch(session=session, model_id=model_id, now=now) if ready else []
    if session.scalar(_ACTIVE_JOB_ID, {"model_id": model_id}) is not None:
        return None
    if session.scalar(_MODEL_STATUS, {"model_id": model_id}) != READY:
        return None  # its requests wait for the registration (app.jobs.registration)
    waiting = len(moved) or session.scalar(
        select(func.count())
        .select_from(ErasureRequest)
        .where(ErasureRequest.model_id == model_id, ErasureRequest.status == RequestStatus.queued)
    )
    if not waiting:
        return None
    job = Job(
        id=str(uuid.uuid4()),
        model_id=model_id,
        status=JobStatus.queued,
        phase="queued",
        progress=0.0,
        attempts=0,
        max_attempts=settings.job_max_attempts,
        created_at=now,
        heartbeat_at=now,
    )
    try:
        with session.begin_nested():
            session.add(job)
    except IntegrityError:  # another transaction created the model's job first
        return None
    audit.append(
        session=session,
        type="job.created",
        actor=SYSTEM,
        subject=f"job:{job.id}",
        data={"model_id": model_id, "queued_requests": waiting},
    )
    JOB_QUEUED.note(session, job.id)
    return job


def schedule_all(*, session: Session, settings: Settings) -> list[Job]:
    """The periodic safety net: schedule every model that has waiting requests."""
    model_ids = session.scalars(
        select(ErasureRequest.model_id)
        .where(
            ErasureRequest.status.in_([RequestStatus.received, RequestStatus.queued]),
            ErasureRequest.model_id.is_not(None),  # a fan-out parent has no job; its children do
        )
        .distinct()
    ).all()
    jobs = [
        schedule_model(session=session, model_id=m, settings=settings)
        for m in model_ids
        if m is not None
    ]
    return [j for j in jobs if j is not None]
