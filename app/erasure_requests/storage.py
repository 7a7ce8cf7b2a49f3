"""How a submitted request is stored: its row, the links to its training samples and its
audit event, in one statement on PostgreSQL (three elsewhere), refusing ids that are not
in the model's training set and recognising a repeated `subject_request_id`."""

from __future__ import annotations

import functools
from typing import Any, NoReturn, cast

from sqlalchemy import ARRAY, String, Table, any_, bindparam, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.sql import Executable

from app.audit import service as audit
from app.core.after_commit import Signal
from app.core.errors import Conflict, UnknownSamples
from app.erasure_requests.models import ErasureRequest, ErasureRequestSample
from app.registry import service as registry
from app.registry.models import TrainingSample
from app.registry.service import ModelRef

# Every column is given on submit (None unless set), so the stored row is known in full
# without reading it back (_attach) and _store_pg binds all of them.
EVERY_COLUMN_UNSET: dict[str, Any] = dict.fromkeys(c.key for c in ErasureRequest.__table__.c)

REQUESTS_STORED = Signal("requests_stored")
"""Noted (with the model id) by a transaction that stored requests: after its commit the
API process's scheduler makes sure the model has a job (`app.jobs.scheduler`)."""

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


def original(
    session: Session,
    existing: ErasureRequest,
    model: ModelRef,
    sample_ids: list[str],
    *,
    visible: bool = True,
) -> ErasureRequest:
    """A repeated `subject_request_id`: the original if it names the same samples, else 409,
    naming the original only to a client that may see it (`visible`)."""
    if not visible:  # another portal's request: nothing about it, not even its id
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


def store(
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
        req = insert_unless_duplicate(session, values)
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


def insert_unless_duplicate(session: Session, values: dict[str, Any]) -> ErasureRequest | None:
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
