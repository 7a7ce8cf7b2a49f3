"""Erasure requests: submit, read, list, cancel."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import uuid
from datetime import datetime
from typing import Any, NoReturn, cast

from sqlalchemy import ARRAY, String, Table, any_, bindparam, func, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.sql import Executable

from app.audit import service as audit
from app.auth.service import Client
from app.callbacks import service as callbacks
from app.callbacks import targets
from app.core.config import Settings
from app.core.db import utcnow
from app.core.deadlines import add_months, days_left
from app.core.errors import BadRequest, Conflict, NotFound, UnknownSamples, Unprocessable
from app.core.subjects import subject_ref
from app.erasure_requests.models import (
    FINAL_STATUSES,
    ErasureRequest,
    ErasureRequestSample,
    RequestStatus,
)
from app.erasure_requests.schemas import ErasureRequestCreate, ErasureRequestRead
from app.jobs import service as jobs_service
from app.registry import service as registry
from app.registry.models import Model, TrainingSample
from app.registry.service import ModelRef, model_ref


def _resolve_samples(
    session: Session, model: ModelRef, body: ErasureRequestCreate, settings: Settings
) -> list[str]:
    if body.sample_ids is not None:
        ids = list(dict.fromkeys(body.sample_ids))
        if len(ids) > settings.max_ids_per_request:
            raise Unprocessable(
                f"{len(ids)} sample ids exceed the limit of {settings.max_ids_per_request} "
                "per request; split the request"
            )
        return ids  # checked against the training set as they are linked (_link_samples)
    secret = settings.secret_key.get_secret_value()
    refs = [
        subject_ref(secret, i.identity_type, i.identity_value)
        for i in body.subject_identities or []
    ]
    ids = registry.samples_of_subjects(session=session, model_id=model.id, subject_refs=refs)
    if not ids:
        raise Unprocessable(
            f"no training sample of {model.name!r} belongs to the given subject identities; "
            "nothing was stored"
        )
    return ids


# The statements of the submit path are built once, with bind parameters, so SQLAlchemy
# computes their cache keys once rather than on every request. PostgreSQL stores a request
# in one statement (_store_pg); the others take three (below).

_INSERT_SQLITE = (
    sqlite.insert(cast(Table, ErasureRequest.__table__))
    .on_conflict_do_nothing(index_elements=["subject_request_id"])
    .returning(ErasureRequest.__table__.c.id)
)
_LINK_KNOWN = insert(cast(Table, ErasureRequestSample.__table__)).from_select(
    ["request_id", "sample_id"],
    select(bindparam("request_id", type_=String), TrainingSample.__table__.c.sample_id).where(
        TrainingSample.__table__.c.model_id == bindparam("model_id"),
        TrainingSample.__table__.c.sample_id.in_(bindparam("ids", expanding=True)),
    ),
)


def _link_samples(
    session: Session, request_id: str, model: ModelRef, sample_ids: list[str]
) -> None:
    """Link the request to its samples with INSERT ... SELECT from the model's training set:
    the membership check and the insert in one statement (per 5,000 ids). An id that is
    not in the training set is not linked, and the whole request is refused (the caller's
    transaction rolls back: nothing stored)."""
    conn = session.connection()
    linked = 0
    for start in range(0, len(sample_ids), 5_000):
        chunk = sample_ids[start : start + 5_000]
        linked += conn.execute(
            _LINK_KNOWN,
            {"request_id": request_id, "model_id": model.id, "ids": chunk},
            execution_options={"preserve_rowcount": True},
        ).rowcount
    if linked != len(sample_ids):
        _refuse_unknown(session, model, sample_ids)


def _refuse_unknown(session: Session, model: ModelRef, sample_ids: list[str]) -> NoReturn:
    """Some ids are not in the training set: 422 listing them (the caller's transaction
    rolls back, so nothing of the request is stored)."""
    unknown = registry.unknown_sample_ids(session=session, model_id=model.id, sample_ids=sample_ids)
    raise UnknownSamples(
        f"{len(unknown)} sample id(s) are not in the training set of {model.name!r}; "
        "nothing was stored",
        unknown_sample_ids=unknown[:1000],
        unknown_count=len(unknown),
    )


def _original(
    session: Session,
    existing: ErasureRequest,
    model: ModelRef,
    sample_ids: list[str],
    client: Client,
) -> ErasureRequest:
    """A repeated `subject_request_id`: the original if it names the same samples, else 409
    (naming the original only to a client that may see it)."""
    if existing.model_id != model.id:
        other = model_ref(session=session, id=existing.model_id)
        if other is None or not client.may_use_model(other.name):
            raise Conflict(
                f"subject_request_id {existing.subject_request_id} cannot be used; send a new one"
            )
    same = existing.model_id == model.id and set(sample_ids) == set(
        session.scalars(
            select(ErasureRequestSample.sample_id).where(
                ErasureRequestSample.request_id == existing.id
            )
        )
    )
    if not same:
        raise Conflict(
            f"subject_request_id {existing.subject_request_id} was already used for a "
            "different request",
            existing_request_id=existing.id,
        )
    return existing


@functools.cache
def _store_pg() -> Executable:
    """PostgreSQL: the request, the links to those of its samples that are in the training
    set, and its audit event, in ONE statement (data-modifying CTEs, which all run, on one
    snapshot). Nothing is inserted when the subject_request_id exists. Returns (inserted,
    linked)."""
    requests = cast(Table, ErasureRequest.__table__)
    samples = TrainingSample.__table__
    request = (
        postgresql.insert(requests)
        .values({c.key: bindparam(c.key, type_=c.type) for c in requests.c})
        .on_conflict_do_nothing(index_elements=["subject_request_id"])
        .returning(requests.c.id)
        .cte("request")
    )
    known = (
        select(request.c.id, samples.c.sample_id)
        .join_from(request, samples, samples.c.model_id == bindparam("model_id"))
        .where(samples.c.sample_id == any_(bindparam("ids", type_=ARRAY(String))))
    )
    links = cast(Table, ErasureRequestSample.__table__)
    linked = (
        insert(links)
        .from_select(["request_id", "sample_id"], known)
        .returning(links.c.sample_id)
        .cte("linked")
    )
    event = audit.pending_from(request).cte("event")
    return select(
        select(func.count()).select_from(request).scalar_subquery().label("inserted"),
        select(func.count()).select_from(linked).scalar_subquery().label("linked"),
    ).add_cte(event)


def _store(
    session: Session,
    values: dict[str, Any],
    model: ModelRef,
    sample_ids: list[str],
    event: dict[str, Any],
) -> ErasureRequest | None:
    """Store the request, link its samples and append its audit event; None, with nothing
    stored, when its subject_request_id exists. One statement on PostgreSQL."""
    conn = session.connection()
    if conn.dialect.name != "postgresql":
        req = _insert_unless_duplicate(session, values)
        if req is not None:
            _link_samples(session, req.id, model, sample_ids)
            audit.append(session=session, **event)
        return req
    params = {**values, "ids": sample_ids, **audit.event_params(**event)}
    row = conn.execute(_store_pg(), params).one()
    if not row.inserted:
        return None
    if row.linked != len(sample_ids):
        _refuse_unknown(session, model, sample_ids)
    audit.STORED.note(session)
    return _attach(session, values)


def _attach(session: Session, values: dict[str, Any]) -> ErasureRequest:
    """The stored request as a persistent object, from `values` (every column), without
    reading the row back; later changes to it are UPDATEs."""
    req = ErasureRequest(**values)
    make_transient_to_detached(req)
    session.add(req)
    return req


def _insert_unless_duplicate(session: Session, values: dict[str, Any]) -> ErasureRequest | None:
    """INSERT the request unless its subject_request_id exists (one round trip, no
    savepoint); None when it does. `values` holds every column, so the object returned
    is complete without reading the row back."""
    conn = session.connection()
    if conn.dialect.name == "sqlite":
        if conn.execute(_INSERT_SQLITE, values).first() is None:
            return None
        return _attach(session, values)
    req = ErasureRequest(**values)
    try:
        with session.begin_nested():
            session.add(req)
    except IntegrityError:
        return None
    return req


# Every column is given on submit (None unless set), so the stored row is known in full
# without reading it back (_attach) and _store_pg binds all of them.
_EVERY_COLUMN_UNSET: dict[str, Any] = dict.fromkeys(c.key for c in ErasureRequest.__table__.c)


def submit(
    *, session: Session, body: ErasureRequestCreate, client: Client, settings: Settings
) -> tuple[ErasureRequest, bool]:
    """Store a new request (and batch it). Returns (request, created); a repeated
    `subject_request_id` with the same content returns the original with created=False."""
    urls = [str(u) for u in body.status_callback_urls]
    targets.check_targets(urls, settings, pointer="/status_callback_urls")
    model = model_ref(session=session, name=body.model)
    if model is None or not client.may_use_model(model.name):  # another portal's: unknown
        raise Unprocessable(
            f"no model named {body.model!r}; GET /v1/models lists them",
            errors=[{"pointer": "/model", "detail": "unknown model"}],
        )
    srid = str(body.subject_request_id)
    sample_ids = _resolve_samples(session, model, body, settings)
    now = utcnow()
    due_at = add_months(now, 1)
    values: dict[str, Any] = {
        **_EVERY_COLUMN_UNSET,
        "id": str(uuid.uuid4()),
        "subject_request_id": srid,
        "model_id": model.id,
        "regulation": body.regulation,
        # Without a batching window a request is batched the moment it is stored: no
        # received->queued UPDATE (whose dead index entries would slow every later submit).
        "status": RequestStatus.queued if settings.batch_window_s == 0 else RequestStatus.received,
        "submitted_time": body.submitted_time,
        "received_at": now,
        "due_at": due_at,
        "updated_at": now,
        "sample_count": len(sample_ids),
        "callback_urls": urls,
        "client": client.name,
        "attempts": 0,
    }
    event = {
        "type": "request.received",
        "actor": client.actor,
        "subject": f"request:{values['id']}",
        "data": {
            "model": model.name,
            "samples": len(sample_ids),
            "regulation": body.regulation,
            "due_at": due_at.isoformat(),
            "by_subject": body.subject_identities is not None,
        },
    }
    req = _store(session, values, model, sample_ids, event)
    if req is None:  # a repeated subject_request_id: a retry, or a concurrent duplicate
        raced = session.scalar(
            select(ErasureRequest).where(ErasureRequest.subject_request_id == srid)
        )
        if raced is None:
            raise Conflict(f"subject_request_id {srid} is being submitted concurrently; retry")
        return _original(session, raced, model, sample_ids, client), False
    if urls:
        callbacks.request_status_changed(session=session, request_ids=[req.id])
    # The job is made after the commit, off the request path (app.jobs.scheduler).
    jobs_service.REQUESTS_STORED.note(session, model.id)
    return req, True


_BY_ID = select(ErasureRequest).where(ErasureRequest.id == bindparam("id"))


def get_request(*, session: Session, request_id: str, client: Client) -> ErasureRequest:
    req = session.scalars(_BY_ID, {"id": request_id}).one_or_none()
    if req is None:
        raise NotFound(f"no erasure request {request_id}")
    model = model_ref(session=session, id=req.model_id)
    assert model is not None  # a foreign key
    if not client.may_use_model(model.name):  # another portal's request does not exist for it
        raise NotFound(f"no erasure request {request_id}")
    return req


def sample_ids_of(*, session: Session, request_id: str) -> list[str]:
    return list(
        session.scalars(
            select(ErasureRequestSample.sample_id)
            .where(ErasureRequestSample.request_id == request_id)
            .order_by(ErasureRequestSample.sample_id)
        )
    )


def to_read(
    session: Session, req: ErasureRequest, now: datetime | None = None
) -> ErasureRequestRead:
    now = now or utcnow()
    model = model_ref(session=session, id=req.model_id)
    assert model is not None  # a foreign key
    open_ = req.status not in FINAL_STATUSES
    return ErasureRequestRead(
        id=uuid.UUID(req.id),
        subject_request_id=uuid.UUID(req.subject_request_id),
        model=model.name,
        regulation=req.regulation,
        status=req.status,
        status_reason=req.status_reason,
        sample_count=req.sample_count,
        submitted_time=req.submitted_time,
        received_at=req.received_at,
        due_at=req.due_at,
        days_left=days_left(req.due_at, now),
        overdue=open_ and req.due_at < now,
        job_id=uuid.UUID(req.job_id) if req.job_id else None,
        result_version=req.result_version,
        completed_at=req.completed_at,
        extension_months=req.extension_months,
        extension_reason=req.extension_reason,
        denial_ground=req.denial_ground,
    )


def _encode_cursor(req: ErasureRequest) -> str:
    raw = json.dumps([req.received_at.isoformat(), req.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, rid = json.loads(raw)
        return datetime.fromisoformat(stamp), str(rid)
    except (ValueError, binascii.Error, TypeError) as exc:
        raise BadRequest("the cursor is not one this API returned; start without it") from exc


def list_requests(
    *,
    session: Session,
    client: Client,
    status: RequestStatus | None,
    model: str | None,
    overdue: bool | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[ErasureRequest], str | None]:
    q = select(ErasureRequest)
    if model is not None:
        q = q.where(ErasureRequest.model_id == registry.get_model(session=session, name=model).id)
    if client.models is not None:
        allowed = select(Model.id).where(Model.name.in_(sorted(client.models)))
        q = q.where(ErasureRequest.model_id.in_(allowed))
    if status is not None:
        q = q.where(ErasureRequest.status == status)
    if overdue is not None:
        now = utcnow()
        open_statuses = [s for s in RequestStatus if s not in FINAL_STATUSES]
        late = ErasureRequest.status.in_(open_statuses) & (ErasureRequest.due_at < now)
        q = q.where(late if overdue else ~late)
    if cursor:
        stamp, rid = _decode_cursor(cursor)
        q = q.where(tuple_(ErasureRequest.received_at, ErasureRequest.id) > tuple_(stamp, rid))
    rows = list(
        session.scalars(q.order_by(ErasureRequest.received_at, ErasureRequest.id).limit(limit + 1))
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (_encode_cursor(rows[-1]) if more and rows else None)


def cancel(*, session: Session, req: ErasureRequest, client: Client) -> ErasureRequest:
    if req.status in (RequestStatus.received, RequestStatus.queued):
        req.status, req.status_reason = RequestStatus.canceled, "canceled by the requester"
        req.completed_at = req.updated_at = utcnow()
        audit.append(
            session=session,
            type="request.canceled",
            actor=client.actor,
            subject=f"request:{req.id}",
            data={},
        )
        callbacks.request_status_changed(session=session, request_ids=[req.id])
        return req
    if req.status == RequestStatus.canceled:
        return req
    if req.status == RequestStatus.running:
        raise Conflict(
            f"request {req.id} is already being erased by job {req.job_id}; "
            "it can no longer be canceled",
            job_id=req.job_id,
        )
    raise Conflict(f"request {req.id} is {req.status.value}; only pending requests can be canceled")


def extend(
    *, session: Session, req: ErasureRequest, months: int, reason: str, client: Client
) -> ErasureRequest:
    """Art. 12(3): push the deadline to received + 1 + `months` months, once."""
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
    """Art. 17(3): refuse a request that no job has started on, with its ground and reason."""
    if req.status == RequestStatus.running:
        raise Conflict(
            f"request {req.id} is already being erased by job {req.job_id}; it can no longer "
            "be denied",
            job_id=req.job_id,
        )
    if req.status in FINAL_STATUSES:
        raise Conflict(f"request {req.id} is {req.status.value}; only open requests can be denied")
    now = utcnow()
    req.status, req.status_reason, req.denial_ground = RequestStatus.denied, reason, ground
    req.completed_at = req.updated_at = now
    audit.append(
        session=session,
        type="request.denied",
        actor=client.actor,
        subject=f"request:{req.id}",
        data={"ground": ground, "reason": reason},
    )
    callbacks.request_status_changed(session=session, request_ids=[req.id])
    return req
