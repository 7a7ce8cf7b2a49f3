"""Every change of an erasure request's status, in one place.

    received ──batch──► queued ──start──► running ──complete──► completed
        │                 ▲  │               │
        │                 │  │               ├─ requeue (the job retries) ──► queued
        │                 │  │               └─ release (the job failed) ──► queued, or
        │                 │  │                  failed once the request's own attempts are spent
        └── fail_waiting ─┴──┴─► failed        (the model was rejected at registration)
        └──── cancel ─────┴──┴─► canceled      (received / queued only)
        └──── deny ──────────► denied          (any open status but running)

The job side (`batch`, `start`, `complete`, `requeue`, `release`) is called by
`app.jobs`; the requester side (`cancel`, `extend`, `deny`) by the routers. Each change
queues the status callbacks of the requests it moved and brings their fan-out parents up
to date (`parents.refresh`). Submitting stores a request as `received`, or `queued` when
there is no batching window (`app.erasure_requests.service`).

A fan-out parent (`fanout.py`) is canceled, denied or extended as a whole: the change is
made to each of its open children (each audited) and the parent follows. It can be
canceled or denied only while its status is received or queued (no child has started),
as a single request. Its children are ordinary requests and can also be canceled, denied
or extended one by one; the parent summarises whatever they end as.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.auth.service import Client
from app.callbacks import service as callbacks
from app.core.config import Settings
from app.core.db import utcnow
from app.core.deadlines import add_months
from app.core.errors import Conflict
from app.erasure_requests import parents
from app.erasure_requests.children import children_of, is_parent
from app.erasure_requests.models import FINAL_STATUSES, ErasureRequest, RequestStatus

# --- the job side --------------------------------------------------------------------------


def batch(*, session: Session, model_id: int, now: datetime) -> list[str]:
    """received → queued: the model's requests whose batching window has passed (the
    caller decides that). Returns the ids moved."""
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
    with_targets = [rid for rid, urls in rows if urls]
    callbacks.request_status_changed(session=session, request_ids=with_targets)
    moved = [rid for rid, _ in rows]
    parents.refresh(session=session, child_ids=moved, now=now)
    return moved


def start(*, session: Session, model_id: int, job_id: str, now: datetime) -> list[str]:
    """queued → running: the job takes every queued request of its model. Returns their
    ids, oldest first (none when all were canceled meanwhile)."""
    session.execute(
        update(ErasureRequest)
        .where(ErasureRequest.model_id == model_id, ErasureRequest.status == RequestStatus.queued)
        .values(status=RequestStatus.running, job_id=job_id, updated_at=now)
    )
    request_ids = list(
        session.scalars(
            select(ErasureRequest.id)
            .where(ErasureRequest.job_id == job_id, ErasureRequest.status == RequestStatus.running)
            .order_by(ErasureRequest.received_at)
        )
    )
    callbacks.request_status_changed(session=session, request_ids=request_ids)
    parents.refresh(session=session, child_ids=request_ids, now=now)
    return request_ids


def complete(*, session: Session, request_ids: list[str], version: int, now: datetime) -> None:
    """running → completed: the version that forgot the requests' samples is published."""
    session.execute(
        update(ErasureRequest)
        .where(ErasureRequest.id.in_(request_ids), ErasureRequest.status == RequestStatus.running)
        .values(
            status=RequestStatus.completed,
            result_version=version,
            completed_at=now,
            updated_at=now,
            status_reason=None,
        )
    )
    callbacks.request_status_changed(session=session, request_ids=request_ids)
    parents.refresh(session=session, child_ids=request_ids, now=now)


def _running(session: Session, job_id: str) -> list[ErasureRequest]:
    return list(
        session.scalars(
            select(ErasureRequest).where(
                ErasureRequest.job_id == job_id, ErasureRequest.status == RequestStatus.running
            )
        )
    )


def requeue(*, session: Session, job_id: str, now: datetime) -> list[str]:
    """running → queued: the job's attempt failed and the job will be retried."""
    requests = _running(session, job_id)
    for req in requests:
        req.status, req.updated_at = RequestStatus.queued, now
    ids = [r.id for r in requests]
    callbacks.request_status_changed(session=session, request_ids=ids)
    parents.refresh(session=session, child_ids=ids, now=now)
    return ids


def release(
    *, session: Session, job_id: str, reason: str, settings: Settings, actor: str, now: datetime
) -> list[str]:
    """running → queued, or failed: the job failed for good. Each request counts one more
    failed job and waits for the next job, unless its own attempts are spent."""
    requests = _running(session, job_id)
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
            req.status_reason = f"job {job_id} failed ({reason}); will be retried"
    ids = [r.id for r in requests]
    callbacks.request_status_changed(session=session, request_ids=ids)
    parents.refresh(session=session, child_ids=ids, now=now, actor=actor)
    return ids


def fail_waiting(
    *, session: Session, model_id: int, reason: str, actor: str, now: datetime
) -> list[str]:
    """received / queued → failed: the model they wait for was rejected at registration,
    so no job will ever run them."""
    requests = list(
        session.scalars(
            select(ErasureRequest).where(
                ErasureRequest.model_id == model_id,
                ErasureRequest.status.in_([RequestStatus.received, RequestStatus.queued]),
            )
        )
    )
    for req in requests:
        req.status, req.status_reason = RequestStatus.failed, reason
        req.completed_at = req.updated_at = now
        audit.append(
            session=session,
            type="request.failed",
            actor=actor,
            subject=f"request:{req.id}",
            data={"reason": reason},
        )
    ids = [r.id for r in requests]
    callbacks.request_status_changed(session=session, request_ids=ids)
    return ids


# --- the requester side --------------------------------------------------------------------


def _open_children(session: Session, parent: ErasureRequest) -> list[ErasureRequest]:
    kids = children_of(session=session, parent_ids=[parent.id])[parent.id]
    return [c for c, _ in kids if c.status not in FINAL_STATUSES]


def _parent_started(parent: ErasureRequest, action: str) -> Conflict:
    return Conflict(
        f"request {parent.id} fans out to several models and erasure has started on at "
        f"least one of them; it can no longer be {action} as a whole (its children, listed "
        "in GET /v1/erasure-requests/{id}, can be one by one while they are not running)",
        status_of_request=parent.status.value,
    )


def cancel(*, session: Session, req: ErasureRequest, client: Client) -> ErasureRequest:
    """Cancel a request no job has started on (a fan-out parent: all its children)."""
    if is_parent(req) and req.status in (RequestStatus.received, RequestStatus.queued):
        now = utcnow()
        kids = _open_children(session, req)
        for child in kids:
            _cancel_one(session, child, client, now)
        parents.refresh(
            session=session, child_ids=[c.id for c in kids], now=now, actor=client.actor
        )
        return req
    if is_parent(req) and req.status == RequestStatus.running:
        raise _parent_started(req, "canceled")
    if req.status in (RequestStatus.received, RequestStatus.queued):
        now = utcnow()
        _cancel_one(session, req, client, now)
        parents.refresh(session=session, child_ids=[req.id], now=now, actor=client.actor)
        return req
    if req.status == RequestStatus.canceled:
        return req
    if req.status == RequestStatus.running:
        raise Conflict(
            f"request {req.id} is already being erased by job {req.job_id}; "
            "it can no longer be canceled",
            job_id=req.job_id,
        )
    raise Conflict(
        f"request {req.id} is {req.status.value}; only a request that is still received or "
        "queued (no job has started on it) can be canceled"
    )


def _cancel_one(session: Session, req: ErasureRequest, client: Client, now: datetime) -> None:
    req.status, req.status_reason = RequestStatus.canceled, "canceled by the requester"
    req.completed_at = req.updated_at = now
    audit.append(
        session=session,
        type="request.canceled",
        actor=client.actor,
        subject=f"request:{req.id}",
        data={},
    )
    callbacks.request_status_changed(session=session, request_ids=[req.id])


def extend(
    *, session: Session, req: ErasureRequest, months: int, reason: str, client: Client
) -> ErasureRequest:
    """Art. 12(3): push the deadline to received + 1 + `months` months, once (a fan-out
    parent: its open children's too)."""
    if is_parent(req) and req.status not in FINAL_STATUSES:
        for child in _open_children(session, req):
            _extend_one(session, child, months, reason, client)
    req = _extend_one(session, req, months, reason, client)
    parents.refresh(session=session, child_ids=[req.id], now=req.updated_at, actor=client.actor)
    return req


def _extend_one(
    session: Session, req: ErasureRequest, months: int, reason: str, client: Client
) -> ErasureRequest:
    if req.status in FINAL_STATUSES:
        raise Conflict(f"request {req.id} is {req.status.value}; its deadline no longer runs")
    if req.extended_at is not None:
        raise Conflict(
            f"request {req.id} was already extended by {req.extension_months} month(s); "
            "Art. 12(3) allows one extension of at most two months",
            due_at=req.due_at.isoformat(),
        )
    previous = req.due_at
    now = utcnow()
    req.due_at = add_months(req.received_at, 1 + months)
    req.extended_at, req.extension_months, req.extension_reason = now, months, reason
    req.updated_at = now
    audit.append(
        session=session,
        type="request.extended",
        actor=client.actor,
        subject=f"request:{req.id}",
        data={
            "months": months,
            "reason": reason,
            "from": previous.isoformat(),
            "due_at": req.due_at.isoformat(),
        },
    )
    return req


def deny(
    *, session: Session, req: ErasureRequest, ground: str, reason: str, client: Client
) -> ErasureRequest:
    """Art. 17(3): refuse a request that no job has started on, with its ground and reason
    (a fan-out parent: all its children, while none has started)."""
    if is_parent(req) and req.status == RequestStatus.running:
        raise _parent_started(req, "denied")
    if req.status == RequestStatus.running:
        raise Conflict(
            f"request {req.id} is already being erased by job {req.job_id}; it can no longer "
            "be denied",
            job_id=req.job_id,
        )
    if req.status in FINAL_STATUSES:
        raise Conflict(f"request {req.id} is {req.status.value}; only open requests can be denied")
    now = utcnow()
    targets = _open_children(session, req) if is_parent(req) else [req]
    for one in targets:
        one.status, one.status_reason, one.denial_ground = RequestStatus.denied, reason, ground
        one.completed_at = one.updated_at = now
        audit.append(
            session=session,
            type="request.denied",
            actor=client.actor,
            subject=f"request:{one.id}",
            data={"ground": ground, "reason": reason},
        )
        callbacks.request_status_changed(session=session, request_ids=[one.id])
    parents.refresh(session=session, child_ids=[t.id for t in targets], now=now, actor=client.actor)
    return req
