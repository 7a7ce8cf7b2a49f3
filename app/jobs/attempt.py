"""One attempt at a job: a worker claims it, beats its heartbeat while it runs, and either
publishes (`app.jobs.flows.publish`) or fails it.

    queued ──claim──► running ──publish──► succeeded
      ▲                  │
      └── fail_attempt ◄─┤ (attempts left: back to queued, re-dispatched)
                         └─► failed (requests back to queued, or failed)

Every state change is a conditional UPDATE, so a redelivered or duplicated job id does
nothing the second time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.config import Settings
from app.core.db import utcnow
from app.erasure_requests import lifecycle as requests
from app.erasure_requests.models import ErasureRequestSample
from app.jobs import scheduling
from app.jobs.models import REGISTER, UNLEARN, Job, JobStatus
from app.registry import service as registry
from app.registry.models import Model

SYSTEM = scheduling.SYSTEM


def _rowcount(session: Session, statement: Any) -> int:
    result = session.execute(statement)
    return int(cast(CursorResult[Any], result).rowcount)


def take(*, session: Session, job_id: str, kind: str, worker: str, now: datetime) -> Job | None:
    """Move a queued job of `kind` to running for `worker` (a conditional UPDATE: of two
    workers, one wins); the job, or None when another worker won or it is not queued."""
    won = _rowcount(
        session,
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued, Job.kind == kind)
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
    return job


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
    """The requests' samples not erased by an earlier version."""
    erased_sample_ids: list[str]
    """Everything erased earlier in this lineage: the base version has forgotten these, so
    the job leaves them out of retain and forgets only `new_sample_ids`."""
    head_module: str | None = None
    """The logits layer a `torchvision:` model was registered with (`Model.registration`);
    None: found automatically."""


def claim(*, session: Session, job_id: str, worker: str) -> Claim | None:
    """Take a queued erasure job (conditional UPDATE). None if another worker won, nothing
    is left, or the job is a registration (`app.jobs.registration.claim`)."""
    now = utcnow()
    job = take(session=session, job_id=job_id, kind=UNLEARN, worker=worker, now=now)
    if job is None:
        return None
    request_ids = requests.start(session=session, model_id=job.model_id, job_id=job.id, now=now)
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
    # a sample erased by an earlier version is not new: the base has forgotten it already
    new_ids = sorted(set(new_ids) - set(erased))
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
        new_sample_ids=new_ids,
        erased_sample_ids=sorted(erased),
        head_module=model.head_module,
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


def owned(session: Session, job_id: str, attempt: int) -> Job | None:
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.status != JobStatus.running or job.attempts != attempt:
        return None
    return job


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
    job = owned(session, job_id, attempt)
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
    if retryable and job.attempts < job.max_attempts:
        job.status, job.phase, job.error, job.heartbeat_at = (
            JobStatus.queued,
            "retrying",
            reason,
            now,
        )
        requests.requeue(session=session, job_id=job.id, now=now)
        scheduling.JOB_QUEUED.note(session, job.id)
        return job
    job.status, job.phase, job.error, job.finished_at = JobStatus.failed, "failed", reason, now
    audit.append(
        session=session,
        type="job.failed",
        actor=actor,
        subject=f"job:{job.id}",
        data={"attempts": job.attempts, "reason": reason},
    )
    requests.release(
        session=session, job_id=job.id, reason=reason, settings=settings, actor=actor, now=now
    )
    if job.kind == REGISTER:  # a registration that cannot finish rejects its model
        from app.jobs.registration import reject  # registration builds on this module

        reject(session=session, job=job, reason=reason, settings=settings, actor=actor)
    session.flush()
    scheduling.schedule_model(session=session, model_id=job.model_id, settings=settings, now=now)
    return job
