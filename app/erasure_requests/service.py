"""Erasure requests: submit, read, list, cancel."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, tuple_
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.auth.service import Client
from app.callbacks import service as callbacks
from app.callbacks import targets
from app.core.config import Settings
from app.core.db import utcnow
from app.core.deadlines import add_months, days_left
from app.core.errors import (
    BadRequest,
    Conflict,
    ModelRejected,
    NotFound,
    Unprocessable,
    WrongIdentityType,
)
from app.core.subjects import subject_ref
from app.erasure_requests import children, fanout, storage
from app.erasure_requests.children import children_of, entry, is_parent, subject_request_id
from app.erasure_requests.models import (
    FINAL_STATUSES,
    ErasureRequest,
    ErasureRequestSample,
    RequestStatus,
)
from app.erasure_requests.schemas import (
    ErasureRequestChild,
    ErasureRequestCreate,
    ErasureRequestRead,
)
from app.registry import service as registry
from app.registry.models import REJECTED, Model
from app.registry.service import ModelRef, model_ref

NO_DATA_HELD = "no data held: no training sample of {model!r} belongs to these subject identities"


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
    _check_identity_types(model, body)
    secret = settings.secret_key.get_secret_value()
    refs = [
        subject_ref(secret, i.identity_type, i.identity_value)
        for i in body.subject_identities or []
    ]
    # none found is an answer, not an error: the request completes at once (no data held)
    return registry.samples_of_subjects(session=session, model_id=model.id, subject_refs=refs)


def _check_identity_types(model: ModelRef, body: ErasureRequestCreate) -> None:
    """An identity of a type the model's subjects are not registered under can never match:
    refuse it by name, rather than as a subject the model does not hold."""
    expected = model.subject_identity_type
    identities = body.subject_identities or []
    wrong = [i for i, x in enumerate(identities) if expected and x.identity_type != expected]
    if wrong:
        given = sorted({identities[i].identity_type for i in wrong})
        raise WrongIdentityType(
            f"model {model.name!r} identifies its data subjects by {expected!r}, not by "
            f"{', '.join(map(repr, given))}; send identities of type {expected!r} "
            f"(GET /v1/models/{model.name} shows its subject_identity_types); nothing was "
            "stored",
            identity_types=[expected],
            errors=[
                {
                    "pointer": f"/subject_identities/{i}/identity_type",
                    "detail": f"this model's identity type is {expected!r}",
                }
                for i in wrong
            ],
        )


def submit(
    *, session: Session, body: ErasureRequestCreate, client: Client, settings: Settings
) -> tuple[ErasureRequest, bool]:
    """Store a new request (and batch it). Returns (request, created); a repeated
    `subject_request_id` with the same content returns the original with created=False."""
    if fanout.is_fanout(body):  # no model named: every model holding the subject
        return fanout.submit(session=session, body=body, client=client, settings=settings)
    assert body.model is not None  # the schema refuses sample ids without a model
    urls = [str(u) for u in body.status_callback_urls]
    targets.check_targets(urls, settings, pointer="/status_callback_urls")
    model = model_ref(session=session, name=body.model)
    if model is None or not client.may_use_model(model.name):  # another portal's: unknown
        raise Unprocessable(
            f"no model named {body.model!r}; GET /v1/models lists them",
            errors=[{"pointer": "/model", "detail": "unknown model"}],
        )
    status, reason = registry.model_status(session=session, model_id=model.id)
    if status == REJECTED:  # a validating model's requests are accepted and wait for it
        raise ModelRejected(
            f"model {model.name!r} was rejected at registration, so it holds no data to "
            f"erase: {reason}",
            reason=reason,
        )
    srid = str(body.subject_request_id)
    sample_ids = _resolve_samples(session, model, body, settings)
    now = utcnow()
    due_at = add_months(now, 1)
    held = bool(sample_ids)
    values: dict[str, Any] = {
        **storage.EVERY_COLUMN_UNSET,
        "id": str(uuid.uuid4()),
        "subject_request_id": srid,
        "model_id": model.id,
        "regulation": body.regulation,
        # Without a batching window a request is batched the moment it is stored: no
        # received->queued UPDATE (whose dead index entries would slow every later submit).
        "status": (
            RequestStatus.completed
            if not held
            else RequestStatus.queued
            if settings.batch_window_s == 0
            else RequestStatus.received
        ),
        "status_reason": None if held else NO_DATA_HELD.format(model=model.name),
        "completed_at": None if held else now,
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
    req = storage.store(session, values, model, sample_ids, event)
    if req is None:  # a repeated subject_request_id: a retry, or a concurrent duplicate
        raced = session.scalar(
            select(ErasureRequest).where(ErasureRequest.subject_request_id == srid)
        )
        if raced is None:
            raise Conflict(f"subject_request_id {srid} is being submitted concurrently; retry")
        visible = (
            fanout.visible(session, raced, client)
            if is_parent(raced)
            else client.may_use_model((model_ref(session=session, id=raced.model_id) or model).name)
        )
        return storage.original(session, raced, model, sample_ids, visible=visible), False
    if not held:
        audit.append(
            session=session,
            type="request.completed",
            actor=client.actor,
            subject=f"request:{req.id}",
            data={"version": None, "no_data_held": True},
        )
    if urls:
        callbacks.request_status_changed(session=session, request_ids=[req.id])
    if held:  # the job is made after the commit, off the request path (app.jobs.scheduler)
        storage.REQUESTS_STORED.note(session, model.id)
    return req, True


_BY_ID = select(ErasureRequest).where(ErasureRequest.id == bindparam("id"))


def get_request(*, session: Session, request_id: str, client: Client) -> ErasureRequest:
    req = session.scalars(_BY_ID, {"id": request_id}).one_or_none()
    if req is None:
        raise NotFound(f"no erasure request {request_id}")
    if is_parent(req):
        shown = fanout.visible(session, req, client)
    else:
        model = model_ref(session=session, id=req.model_id)
        assert model is not None  # a foreign key
        shown = client.may_use_model(model.name)
    if not shown:  # another portal's request does not exist for it
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
    model = model_ref(session=session, id=req.model_id) if req.model_id is not None else None
    open_ = req.status not in FINAL_STATUSES
    kids = children_of(session=session, parent_ids=[req.id])[req.id] if is_parent(req) else None
    return ErasureRequestRead(
        id=uuid.UUID(req.id),
        subject_request_id=uuid.UUID(subject_request_id(session=session, req=req)),
        model=model.name if model else None,
        parent_id=uuid.UUID(req.parent_id) if req.parent_id else None,
        models=[name for _, name in kids] if kids is not None else None,
        children=[ErasureRequestChild.model_validate(entry(c, n)) for c, n in kids]
        if kids is not None
        else None,
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"([0-9]{1,16})\.([0-9a-f-]{36})")
"""A cursor is the keyset position `<received_at in µs since the epoch>.<request id>`:
every value of this form is a position (OpenAPI documents the pattern)."""


def _encode_cursor(req: ErasureRequest) -> str:
    return f"{(req.received_at - _EPOCH) // timedelta(microseconds=1)}.{req.id}"


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise BadRequest("the cursor is not one this API returned; start without it")
    return _EPOCH + timedelta(microseconds=int(match[1])), match[2]


def list_requests(
    *,
    session: Session,
    client: Client,
    status: RequestStatus | None,
    model: str | None,
    overdue: bool | None,
    cursor: str | None,
    limit: int,
    top_level: bool = False,
) -> tuple[list[ErasureRequest], str | None]:
    """A page of the requests the client may see, oldest first. `top_level`: fan-out
    parents and standalone requests only, not the parents' children (the console lists
    those under their parent)."""
    q = select(ErasureRequest)
    if top_level:
        q = q.where(children.top_level(client))
    if model is not None:
        q = q.where(ErasureRequest.model_id == registry.get_model(session=session, name=model).id)
    if client.models is not None and not top_level:  # top_level applies the key's models
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
