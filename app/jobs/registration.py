"""Registration as a job: the flows of a model's `register` job across domains.

    API: model `validating` + its manifest rows + a `register` job (queue)
      ─► worker claims it (claim) ─► checks checkpoint and data, warms features, measures
      ─► ONE transaction: version 1, alias, model `ready`, the model's first erasure job
          (publish)
      or ONE transaction: model `rejected` with the reason, its manifest rows deleted, the
          requests that waited failed with the reason (reject); the uploads leave the store

The register job is a row of `jobs` on the model, so the database's one-active-job-per-model
index makes erasure jobs wait behind it: requests accepted while the model validates stay
queued, and `publish` schedules their job in its own transaction. Attempts, heartbeats,
retries of transient failures and the reaper are those of every job (`app.jobs.attempt`);
when the last attempt fails for a transient reason the model is rejected with it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.audit import service as audit
from app.core.config import Settings
from app.core.db import utcnow
from app.erasure_requests import lifecycle as requests
from app.jobs import scheduling
from app.jobs.attempt import owned, take
from app.jobs.models import REGISTER, Job, JobStatus
from app.registry import service as registry
from app.registry.models import READY, REJECTED, VALIDATING, Model, ModelVersion

SYSTEM = scheduling.SYSTEM


def queue(*, session: Session, model: Model, settings: Settings, actor: str) -> Job:
    """The model's registration job (queued; dispatched after the caller's commit)."""
    now = utcnow()
    job = Job(
        id=str(uuid.uuid4()),
        model_id=model.id,
        kind=REGISTER,
        status=JobStatus.queued,
        phase="queued",
        progress=0.0,
        attempts=0,
        max_attempts=settings.job_max_attempts,
        base_version=None,
        created_at=now,
        heartbeat_at=now,
    )
    session.add(job)
    session.flush()
    audit.append(
        session=session,
        type="model.registration_accepted",
        actor=actor,
        subject=f"model:{model.name}",
        data={
            "job": job.id,
            "architecture": model.architecture,
            "dataset": model.dataset_id,
            "samples": registry.count_samples(session=session, model_id=model.id),
            "upload_sha256": (model.registration or {}).get("upload"),
        },
    )
    scheduling.JOB_QUEUED.note(session, job.id)
    return job


@dataclass(frozen=True)
class RegistrationClaim:
    """What a worker needs to run a registration, without the ORM."""

    job_id: str
    attempt: int
    model_id: int
    model_name: str
    architecture: str
    num_classes: int
    dataset_id: str
    dataset_params: dict[str, Any]
    upload: str
    """Blob digest of the checkpoint as uploaded."""
    upload_format: str
    """`safetensors` or `pt`."""
    head_module: str | None = None
    """The named logits layer of a `torchvision:` model (None: found automatically)."""


def claim(*, session: Session, job_id: str, worker: str) -> RegistrationClaim | None:
    """Take a queued registration job (conditional UPDATE); None if another worker won."""
    job = take(session=session, job_id=job_id, kind=REGISTER, worker=worker, now=utcnow())
    if job is None:
        return None
    model = session.get(Model, job.model_id)
    assert model is not None and model.registration is not None
    audit.append(
        session=session,
        type="job.started",
        actor=f"worker:{worker}",
        subject=f"job:{job.id}",
        data={"attempt": job.attempts, "kind": REGISTER, "model": model.name},
    )
    return RegistrationClaim(
        job_id=job.id,
        attempt=job.attempts,
        model_id=model.id,
        model_name=model.name,
        architecture=model.architecture,
        num_classes=model.num_classes,
        dataset_id=model.dataset_id,
        dataset_params=dict(model.dataset_params),
        upload=str(model.registration["upload"]),
        upload_format=str(model.registration.get("format", "safetensors")),
        head_module=model.head_module,
    )


def publish(
    *,
    session: Session,
    claim: RegistrationClaim,
    metrics: dict[str, Any],
    checkpoint_sha256: str,
    checkpoint_size: int,
    stored_bytes: int,
    settings: Settings,
    worker: str,
) -> ModelVersion | None:
    """Version 1 and the model `ready`, in the caller's transaction; None if this attempt
    lost the job (nothing written)."""
    job = owned(session, claim.job_id, claim.attempt)
    if job is None:
        return None
    model = session.get(Model, claim.model_id, with_for_update=True)
    assert model is not None
    now = utcnow()
    actor = f"worker:{worker}"
    version = registry.publish_first_version(
        session=session,
        model=model,
        checkpoint_sha256=checkpoint_sha256,
        checkpoint_size=checkpoint_size,
        stored_bytes=stored_bytes,
        metrics=metrics,
        actor=actor,
        job_id=job.id,
    )
    model.status, model.status_reason = READY, None
    job.status, job.phase, job.progress = JobStatus.succeeded, "ready", 100.0
    job.result_version, job.finished_at, job.metrics = 1, now, metrics
    job.method, job.error = "registered", None
    audit.append(
        session=session,
        type="model.ready",
        actor=actor,
        subject=f"model:{model.name}",
        data={"version": 1, "job": job.id, "checkpoint_sha256": checkpoint_sha256},
    )
    session.flush()
    scheduling.schedule_model(session=session, model_id=model.id, settings=settings, now=now)
    return version


def reject(*, session: Session, job: Job, reason: str, settings: Settings, actor: str) -> list[str]:
    """The model `rejected` with `reason`: its manifest rows deleted, the requests that
    waited for it failed with the reason, the job failed. Returns the blob digests of the
    uploads, which the caller deletes from the store after the commit."""
    model = session.get(Model, job.model_id, with_for_update=True)
    assert model is not None
    now = utcnow()
    reason = reason[:4000]
    if model.status == VALIDATING:
        model.status, model.status_reason = REJECTED, reason
        registry.delete_samples(session=session, model_id=model.id)
        requests.fail_waiting(
            session=session,
            model_id=model.id,
            reason=f"model {model.name!r} was rejected at registration: {reason}",
            actor=actor,
            now=now,
        )
        audit.append(
            session=session,
            type="model.rejected",
            actor=actor,
            subject=f"model:{model.name}",
            data={"job": job.id, "reason": reason},
        )
    if job.status in (JobStatus.queued, JobStatus.running):
        job.status, job.phase, job.error, job.finished_at = (
            JobStatus.failed,
            "rejected",
            reason,
            now,
        )
    uploads = (
        (model.registration or {}).get("upload"),
        model.dataset_params.get("manifest"),
        model.dataset_params.get("blob"),
    )
    return [str(d) for d in uploads if d]


def reject_claimed(
    *,
    session: Session,
    claim: RegistrationClaim,
    reason: str,
    settings: Settings,
    worker: str,
) -> list[str] | None:
    """`reject` for the attempt that owns the job; None if it lost the job."""
    job = owned(session, claim.job_id, claim.attempt)
    if job is None:
        return None
    return reject(
        session=session, job=job, reason=reason, settings=settings, actor=f"worker:{worker}"
    )
