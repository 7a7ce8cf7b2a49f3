"""Jobs: batching queued requests, claiming, heartbeats, publishing, failures, the reaper.

Life of a job:

    schedule_model ──► queued ──claim──► running ──publish──► succeeded
                         ▲                  │
                         └── fail_attempt ◄─┤ (attempts left: back to queued, re-dispatched)
                                            └─► failed (requests back to queued, or failed)

Only one job per model can be queued or running (a partial unique index), so a model's
versions form a chain. A job takes all of the model's queued requests when it is claimed;
requests that arrive later wait for the next job. Every state change is a conditional
UPDATE, so a redelivered or duplicated job id does nothing the second time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.callbacks import service as callbacks
from app.core.background import Signal
from app.core.config import Settings
from app.core.db import dispatch_after_commit, utcnow
from app.core.errors import NotFound
from app.erasure_requests.models import ErasureRequest, ErasureRequestSample, RequestStatus
from app.jobs.models import ACTIVE, Job, JobStatus
from app.registry import service as registry
from app.registry.models import Model, ModelVersion, TrainingSample

SYSTEM = "system:scheduler"


def _rowcount(session: Session, statement: Any) -> int:
    result = session.execute(statement)
    return int(cast(CursorResult[Any], result).rowcount)


def get_job(*, session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}")
    return job


REQUESTS_STORED = Signal("requests_stored")
"""Noted (with the model id) by a transaction that stored requests: after its commit the
API process's scheduler makes sure the model has a job."""

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
    moved: list[str] = []
    if ready:
        # ORM-enabled UPDATE: objects of these requests in the session see the new status
        rows = session.execute(
            update(ErasureRequest)
            .where(
                ErasureRequest.model_id == model_id,
                ErasureRequest.status == RequestStatus.received,
            )
            .values(status=RequestStatus.queued, updated_at=now)
            .returning(ErasureRequest.id, ErasureRequest.callback_urls)
        ).all()
        moved = [rid for rid, _ in rows]
        with_targets = [rid for rid, urls in rows if urls]
        callbacks.request_status_changed(session=session, request_ids=with_targets)
    if session.scalar(_ACTIVE_JOB_ID, {"model_id": model_id}) is not None:
        return None
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
    dispatch_after_commit(session, job.id)
    return job


def schedule_all(*, session: Session, settings: Settings) -> list[Job]:
    """The periodic safety net: schedule every model that has waiting requests."""
    model_ids = session.scalars(
        select(ErasureRequest.model_id)
        .where(ErasureRequest.status.in_([RequestStatus.received, RequestStatus.queued]))
        .distinct()
    ).all()
    jobs = [schedule_model(session=session, model_id=m, settings=settings) for m in model_ids]
    return [j for j in jobs if j is not None]


@dataclass(frozen=True)
class Claim:
    """What a worker needs after winning a job: everything to run it without the ORM."""

    job_id: str
    attempt: int
    model_id: int
    model_name: str
    architecture: str
    num_classes: int
    dataset_id: str
    dataset_params: dict[str, Any]
    base_version: int
    base_sha256: str
    base_metrics: dict[str, Any]
    request_ids: list[str]
    new_sample_ids: list[str]
    erased_sample_ids: list[str]
    """Everything erased earlier in this lineage; the job forgets these plus the new ones."""


def claim(*, session: Session, job_id: str, worker: str) -> Claim | None:
    """Take a queued job (conditional UPDATE). None if another worker won or nothing is left."""
    now = utcnow()
    won = _rowcount(
        session,
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued)
        .values(
            status=JobStatus.running,
            attempts=Job.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            worker=worker,
            phase="starting",
            progress=0.0,
        ),
    )
    if won != 1:
        return None
    job = session.get(Job, job_id, populate_existing=True)
    assert job is not None
    session.execute(
        update(ErasureRequest)
        .where(
            ErasureRequest.model_id == job.model_id, ErasureRequest.status == RequestStatus.queued
        )
        .values(status=RequestStatus.running, job_id=job.id, updated_at=now)
    )
    request_ids = list(
        session.scalars(
            select(ErasureRequest.id)
            .where(ErasureRequest.job_id == job.id, ErasureRequest.status == RequestStatus.running)
            .order_by(ErasureRequest.received_at)
        )
    )
    callbacks.request_status_changed(session=session, request_ids=request_ids)
    if not request_ids:
        job.status, job.phase, job.finished_at = JobStatus.canceled, "nothing to do", now
        job.error = "every request of this job was canceled before it started"
        return None
    model = session.get(Model, job.model_id)
    base = registry.latest_version(session=session, model_id=job.model_id)
    assert model is not None and base is not None
    job.base_version = base.number
    new_ids = list(
        session.scalars(
            select(ErasureRequestSample.sample_id)
            .where(ErasureRequestSample.request_id.in_(request_ids))
            .distinct()
        )
    )
    erased = registry.erased_sample_ids(session=session, model_id=model.id)
    audit.append(
        session=session,
        type="job.started",
        actor=f"worker:{worker}",
        subject=f"job:{job.id}",
        data={"attempt": job.attempts, "base_version": base.number, "requests": request_ids},
    )
    return Claim(
        job_id=job.id,
        attempt=job.attempts,
        model_id=model.id,
        model_name=model.name,
        architecture=model.architecture,
        num_classes=model.num_classes,
        dataset_id=model.dataset_id,
        dataset_params=dict(model.dataset_params),
        base_version=base.number,
        base_sha256=base.checkpoint_sha256,
        base_metrics=dict(base.metrics),
        request_ids=request_ids,
        new_sample_ids=sorted(new_ids),
        erased_sample_ids=sorted(erased),
    )


def heartbeat(*, session: Session, job_id: str, attempt: int, phase: str, progress: float) -> bool:
    """Record liveness and progress. False when this attempt no longer owns the job."""
    changed = _rowcount(
        session,
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.running, Job.attempts == attempt)
        .values(heartbeat_at=utcnow(), phase=phase, progress=round(100.0 * progress, 1)),
    )
    return changed == 1


def _owned(session: Session, job_id: str, attempt: int) -> Job | None:
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.status != JobStatus.running or job.attempts != attempt:
        return None
    return job


@dataclass(frozen=True)
class Outcome:
    method: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    checkpoint_sha256: str
    checkpoint_size: int
    stored_bytes: int


def publish(
    *, session: Session, claim: Claim, outcome: Outcome, settings: Settings, worker: str
) -> ModelVersion | None:
    """In the caller's one transaction: the version, completed requests, erased samples,
    the alias and the audit events. None if this attempt lost the job (nothing written)."""
    existing = session.scalar(select(ModelVersion).where(ModelVersion.job_id == claim.job_id))
    if existing is not None:
        return existing
    job = _owned(session, claim.job_id, claim.attempt)
    if job is None:
        return None
    model = session.get(Model, claim.model_id)
    assert model is not None
    now = utcnow()
    number = claim.base_version + 1
    session.execute(
        update(TrainingSample)
        .where(
            TrainingSample.model_id == model.id,
            TrainingSample.sample_id.in_(claim.new_sample_ids),
            TrainingSample.erased_in_version.is_(None),
        )
        .values(erased_in_version=number)
    )
    erased_count = (
        session.scalar(
            select(func.count())
            .select_from(TrainingSample)
            .where(
                TrainingSample.model_id == model.id, TrainingSample.erased_in_version.is_not(None)
            )
        )
        or 0
    )
    version = ModelVersion(
        model_id=model.id,
        number=number,
        parent_number=claim.base_version,
        job_id=claim.job_id,
        method=outcome.method,
        params=outcome.params,
        metrics=outcome.metrics,
        request_ids=claim.request_ids,
        erased_count=erased_count,
        checkpoint_sha256=outcome.checkpoint_sha256,
        checkpoint_size=outcome.checkpoint_size,
        stored_bytes=outcome.stored_bytes,
        created_at=now,
    )
    session.add(version)
    session.flush()
    session.execute(
        update(ErasureRequest)
        .where(
            ErasureRequest.id.in_(claim.request_ids), ErasureRequest.status == RequestStatus.running
        )
        .values(
            status=RequestStatus.completed,
            result_version=number,
            completed_at=now,
            updated_at=now,
            status_reason=None,
        )
    )
    callbacks.request_status_changed(session=session, request_ids=claim.request_ids)
    actor = f"worker:{worker}"
    audit.append(
        session=session,
        type="version.published",
        actor=actor,
        subject=f"model:{model.name}",
        data={
            "version": number,
            "parent": claim.base_version,
            "job": claim.job_id,
            "method": outcome.method,
            "checkpoint_sha256": outcome.checkpoint_sha256,
            "requests": claim.request_ids,
            "metrics": outcome.metrics,
        },
    )
    callbacks.model_event(
        session=session,
        model=model,
        type=callbacks.VERSION_PUBLISHED,
        data={
            "version": number,
            "parent": claim.base_version,
            "method": outcome.method,
            "checkpoint_sha256": outcome.checkpoint_sha256,
            "checkpoint_size": outcome.checkpoint_size,
            "request_ids": claim.request_ids,
            "metrics": outcome.metrics,
        },
    )
    for rid in claim.request_ids:
        audit.append(
            session=session,
            type="request.completed",
            actor=actor,
            subject=f"request:{rid}",
            data={"version": number},
        )
    if model.auto_promote:
        registry.move_alias(
            session=session,
            model=model,
            alias=registry.PRODUCTION,
            number=number,
            actor=actor,
        )
    job.status, job.phase, job.progress = JobStatus.succeeded, "published", 100.0
    job.result_version, job.finished_at, job.metrics = number, now, outcome.metrics
    job.method, job.error = outcome.method, None
    audit.append(
        session=session,
        type="job.completed",
        actor=actor,
        subject=f"job:{job.id}",
        data={"version": number, "attempt": claim.attempt},
    )
    session.flush()
    schedule_model(session=session, model_id=model.id, settings=settings, now=now)
    return version


def fail_attempt(
    *,
    session: Session,
    job_id: str,
    attempt: int,
    reason: str,
    settings: Settings,
    retryable: bool = True,
    actor: str = SYSTEM,
) -> Job | None:
    """An attempt failed: retry the job while attempts remain, else fail it and hand its
    requests back to the queue (or fail them once their own attempts are spent)."""
    job = _owned(session, job_id, attempt)
    if job is None:
        return None
    now = utcnow()
    reason = reason[:4000]
    audit.append(
        session=session,
        type="job.attempt_failed",
        actor=actor,
        subject=f"job:{job.id}",
        data={"attempt": attempt, "reason": reason},
    )
    requests = list(
        session.scalars(
            select(ErasureRequest).where(
                ErasureRequest.job_id == job.id, ErasureRequest.status == RequestStatus.running
            )
        )
    )
    if retryable and job.attempts < job.max_attempts:
        job.status, job.phase, job.error, job.heartbeat_at = (
            JobStatus.queued,
            "retrying",
            reason,
            now,
        )
        for req in requests:
            req.status, req.updated_at = RequestStatus.queued, now
        callbacks.request_status_changed(session=session, request_ids=[r.id for r in requests])
        dispatch_after_commit(session, job.id)
        return job
    job.status, job.phase, job.error, job.finished_at = JobStatus.failed, "failed", reason, now
    audit.append(
        session=session,
        type="job.failed",
        actor=actor,
        subject=f"job:{job.id}",
        data={"attempts": job.attempts, "reason": reason},
    )
    for req in requests:
        req.attempts += 1
        req.updated_at = now
        if req.attempts >= settings.request_max_attempts:
            req.status = RequestStatus.failed
            req.status_reason = f"failed after {req.attempts} job(s); last error: {reason}"
            req.completed_at = now
            audit.append(
                session=session,
                type="request.failed",
                actor=actor,
                subject=f"request:{req.id}",
                data={"reason": req.status_reason},
            )
        else:
            req.status = RequestStatus.queued
            req.status_reason = f"job {job.id} failed ({reason}); will be retried"
    callbacks.request_status_changed(session=session, request_ids=[r.id for r in requests])
    session.flush()
    schedule_model(session=session, model_id=job.model_id, settings=settings, now=now)
    return job


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
        dispatch_after_commit(session, job_id)
    return redo
