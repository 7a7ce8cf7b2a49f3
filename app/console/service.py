"""What the console's pages show, composed from the domain services (which own every
change): a request's timeline, status counts, a model's lineage and alias history."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit.models import AuditHead
from app.auth.service import Client
from app.erasure_requests.children import top_level
from app.erasure_requests.models import ErasureRequest, RequestStatus
from app.jobs.models import Job
from app.registry.models import AliasMove, Model, ModelVersion


@dataclass(frozen=True)
class Step:
    """One line of a request's timeline; `at` None = not reached (yet)."""

    name: str
    at: datetime | None
    detail: str = ""
    state: str = "done"  # done | current | failed | todo


def status_counts(*, session: Session, client: Client) -> dict[str, int]:
    """Requests by status as a DPO counts them: one per data subject's request, so a
    fan-out parent counts once and its children (its share per model) not at all
    (`children.top_level`)."""
    q = (
        select(ErasureRequest.status, func.count())
        .where(top_level(client))
        .group_by(ErasureRequest.status)
    )
    counts = {s.value: 0 for s in RequestStatus}
    for status, n in session.execute(q):
        counts[RequestStatus(status).value] = int(n)
    return counts


def job_of(*, session: Session, req: ErasureRequest) -> Job | None:
    return session.get(Job, req.job_id) if req.job_id else None


def timeline(*, req: ErasureRequest, job: Job | None) -> list[Step]:
    steps = [Step("received", req.received_at, f"{req.sample_count} sample(s), {req.regulation}")]
    if req.extended_at is not None:
        steps.append(
            Step(
                "deadline extended",
                req.extended_at,
                f"+{req.extension_months} month(s): {req.extension_reason}",
            )
        )
    status = req.status
    if job is not None:
        steps.append(Step("queued", job.created_at, f"in job {job.id}"))
        if job.started_at is not None:
            running = status == RequestStatus.running
            detail = f"attempt {job.attempts}" + (f", worker {job.worker}" if job.worker else "")
            steps.append(Step("running", job.started_at, detail, "current" if running else "done"))
        elif status in (RequestStatus.queued, RequestStatus.received):
            steps.append(Step("running", None, "waiting for a worker", "todo"))
    elif status in (RequestStatus.received, RequestStatus.queued):
        steps.append(Step("queued", None, "waiting for the scheduler", "todo"))
    reason = req.status_reason or ""
    if status == RequestStatus.completed:
        steps.append(Step("completed", req.completed_at, f"erased in version {req.result_version}"))
    elif status == RequestStatus.denied:
        steps.append(Step("denied", req.completed_at, f"{req.denial_ground}: {reason}", "failed"))
    elif status == RequestStatus.failed:
        steps.append(Step("failed", req.completed_at, reason, "failed"))
    elif status == RequestStatus.canceled:
        steps.append(Step("canceled", req.completed_at, reason, "failed"))
    else:
        steps.append(Step("completed", None, "", "todo"))
    return steps


def models_for(*, session: Session, client: Client) -> list[Model]:
    return [
        m
        for m in session.scalars(select(Model).order_by(Model.name))
        if client.may_use_model(m.name)
    ]


def latest_versions(*, session: Session, model_ids: list[int]) -> dict[int, ModelVersion]:
    newest = (
        select(ModelVersion.model_id, func.max(ModelVersion.number).label("n"))
        .where(ModelVersion.model_id.in_(model_ids))
        .group_by(ModelVersion.model_id)
        .subquery()
    )
    rows = session.scalars(
        select(ModelVersion).join(
            newest,
            (ModelVersion.model_id == newest.c.model_id) & (ModelVersion.number == newest.c.n),
        )
    )
    return {v.model_id: v for v in rows}


def alias_moves(*, session: Session, model: Model) -> list[AliasMove]:
    """Every move of every alias of `model`, newest first."""
    return list(
        session.scalars(
            select(AliasMove).where(AliasMove.model_id == model.id).order_by(AliasMove.id.desc())
        )
    )


def chain_head(*, session: Session) -> AuditHead | None:
    """The sealed chain's tip (sequence number and hash), None before the first event."""
    return session.get(AuditHead, 1)
