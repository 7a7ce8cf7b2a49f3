"""Flows: what a job does across domains when it ends well.

`publish` runs in the worker's one transaction once the engine has produced and the store
holds the new checkpoint: the version (`app.registry.versions`), the completed requests
(`app.erasure_requests.lifecycle`), the alias, the webhooks and status callbacks
(`app.callbacks`), the audit events, the job itself, and the model's next job
(`app.jobs.scheduling`). Domains do not call each other for this; the flow calls them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.callbacks import service as callbacks
from app.core.config import Settings
from app.core.db import utcnow
from app.erasure_requests import lifecycle as requests
from app.jobs.attempt import Claim, owned
from app.jobs.models import JobStatus
from app.jobs.scheduling import schedule_model
from app.registry import service as registry
from app.registry import versions as registry_versions
from app.registry.models import Model, ModelVersion


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
    job = owned(session, claim.job_id, claim.attempt)
    if job is None:
        return None
    model = session.get(Model, claim.model_id)
    assert model is not None
    now = utcnow()
    number = claim.base_version + 1
    version = registry_versions.add_version(
        session=session,
        model_id=model.id,
        number=number,
        parent_number=claim.base_version,
        job_id=claim.job_id,
        method=outcome.method,
        params=outcome.params,
        metrics=outcome.metrics,
        request_ids=claim.request_ids,
        checkpoint_sha256=outcome.checkpoint_sha256,
        checkpoint_size=outcome.checkpoint_size,
        stored_bytes=outcome.stored_bytes,
        erased_sample_ids=claim.new_sample_ids,
        created_at=now,
    )
    session.flush()
    requests.complete(session=session, request_ids=claim.request_ids, version=number, now=now)
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
