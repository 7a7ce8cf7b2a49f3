"""Subject fan-out: a request by subject identities that names no model (or `*`).

Lethe finds every model (of those the API key may use) with a not yet erased training
sample whose `subject_ref` is the keyed hash of one of the identities (the hash includes
the identity type, so a model keyed by `user_id` never matches an `email`), and stores
one parent request (no model; it holds the portal's `subject_request_id`, the callback
targets and the deadline) with one ordinary child request per model, all in the caller's
transaction. The parent summarises its children (`parents.py`). No model holding the
subject is an answer, not an error: the parent is stored `completed` at once with no
children ("no data held"), audited.

A repeated `subject_request_id` is the same request when it was a fan-out of the same
identities (`selector_digest`, a SHA-256 over the sorted keyed hashes; no raw identity is
stored): the original parent is returned and no child is added.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.auth.service import Client
from app.callbacks import service as callbacks
from app.callbacks import targets
from app.core.config import Settings
from app.core.db import utcnow
from app.core.deadlines import add_months
from app.core.errors import Conflict, WrongIdentityType
from app.core.subjects import subject_ref
from app.erasure_requests import storage
from app.erasure_requests.children import children_of
from app.erasure_requests.models import ErasureRequest, RequestStatus
from app.erasure_requests.schemas import ErasureRequestCreate
from app.registry.models import Model, TrainingSample
from app.registry.service import ModelRef, model_ref

ANY_MODEL = "*"
NO_DATA_HELD = "no data held: no registered model holds training data of these subject identities"


def is_fanout(body: ErasureRequestCreate) -> bool:
    return body.model is None or body.model == ANY_MODEL


def _visible_models(session: Session, client: Client) -> list[tuple[int, str, str | None]]:
    rows = session.execute(
        select(Model.id, Model.name, Model.subject_identity_type).order_by(Model.name)
    ).all()
    return [(r.id, r.name, r.subject_identity_type) for r in rows if client.may_use_model(r.name)]


def _check_types(body: ErasureRequestCreate, models: list[tuple[int, str, str | None]]) -> None:
    """Identities none of whose types any model uses can never match: 422 listing the
    types the models use (rather than a silent "no data held")."""
    known = sorted({t for _, _, t in models if t})
    given = [i.identity_type for i in body.subject_identities or []]
    if known and not set(given) & set(known):
        raise WrongIdentityType(
            f"no model identifies its data subjects by {', '.join(map(repr, sorted(set(given))))};"
            f" the models' identity types are {known}: send identities of one of these types "
            "(GET /v1/models shows each model's subject_identity_types); nothing was stored",
            identity_types=known,
            errors=[
                {
                    "pointer": f"/subject_identities/{i}/identity_type",
                    "detail": f"no model uses this type; known: {known}",
                }
                for i in range(len(given))
            ],
        )


def _held(session: Session, model_ids: list[int], refs: list[str]) -> dict[int, list[str]]:
    """The not yet erased samples of these subjects, per model."""
    held: dict[int, list[str]] = defaultdict(list)
    if not model_ids or not refs:
        return held
    for model_id, sample_id in session.execute(
        select(TrainingSample.model_id, TrainingSample.sample_id)
        .where(
            TrainingSample.model_id.in_(model_ids),
            TrainingSample.subject_ref.in_(refs),
            TrainingSample.erased_in_version.is_(None),
        )
        .order_by(TrainingSample.model_id, TrainingSample.sample_id)
    ):
        held[model_id].append(sample_id)
    return held


def submit(
    *, session: Session, body: ErasureRequestCreate, client: Client, settings: Settings
) -> tuple[ErasureRequest, bool]:
    """Store the parent and one child per model holding the subject. Returns (parent,
    created); a repeat of the same fan-out returns the original parent, created=False."""
    urls = [str(u) for u in body.status_callback_urls]
    targets.check_targets(urls, settings, pointer="/status_callback_urls")
    models = _visible_models(session, client)
    _check_types(body, models)
    secret = settings.secret_key.get_secret_value()
    refs = sorted(
        {
            subject_ref(secret, i.identity_type, i.identity_value)
            for i in body.subject_identities or []
        }
    )
    digest = hashlib.sha256("\n".join(refs).encode()).hexdigest()
    held = _held(session, [m for m, _, _ in models], refs)
    names = {m: name for m, name, _ in models}
    now = utcnow()
    due_at = add_months(now, 1)
    open_status = RequestStatus.queued if settings.batch_window_s == 0 else RequestStatus.received
    common: dict[str, Any] = {
        **storage.EVERY_COLUMN_UNSET,
        "regulation": body.regulation,
        "submitted_time": body.submitted_time,
        "received_at": now,
        "due_at": due_at,
        "updated_at": now,
        "client": client.name,
        "attempts": 0,
    }
    parent_values = {
        **common,
        "id": str(uuid.uuid4()),
        "subject_request_id": str(body.subject_request_id),
        "status": open_status if held else RequestStatus.completed,
        "status_reason": None if held else NO_DATA_HELD,
        "completed_at": None if held else now,
        "sample_count": sum(len(v) for v in held.values()),
        "callback_urls": urls,
        "selector_digest": digest,
    }
    parent = storage.insert_unless_duplicate(session, parent_values)
    if parent is None:
        return _original(session, str(body.subject_request_id), digest, client), False
    held_names = sorted(names[m] for m in held)
    audit.append(
        session=session,
        type="request.received",
        actor=client.actor,
        subject=f"request:{parent.id}",
        data={
            "model": None,
            "models": held_names,
            "samples": parent.sample_count,
            "regulation": body.regulation,
            "due_at": due_at.isoformat(),
            "by_subject": True,
            "fan_out": True,
        },
    )
    for model_id, sample_ids in sorted(held.items(), key=lambda kv: names[kv[0]]):
        _store_child(session, parent, common, ModelRef(model_id, names[model_id]), sample_ids)
    if not held:
        audit.append(
            session=session,
            type="request.completed",
            actor=client.actor,
            subject=f"request:{parent.id}",
            data={"version": None, "no_data_held": True, "models": []},
        )
    if urls:
        callbacks.request_status_changed(session=session, request_ids=[parent.id])
    return parent, True


def _store_child(
    session: Session,
    parent: ErasureRequest,
    common: dict[str, Any],
    model: ModelRef,
    sample_ids: list[str],
) -> None:
    values = {
        **common,
        "id": str(uuid.uuid4()),
        "subject_request_id": None,
        "parent_id": parent.id,
        "model_id": model.id,
        "status": parent.status,
        "sample_count": len(sample_ids),
        "callback_urls": [],  # the parent reports to the portal
    }
    event = {
        "type": "request.received",
        "actor": f"key:{parent.client}",
        "subject": f"request:{values['id']}",
        "data": {
            "model": model.name,
            "samples": len(sample_ids),
            "regulation": parent.regulation,
            "due_at": parent.due_at.isoformat(),
            "by_subject": True,
            "parent": parent.id,
        },
    }
    # subject_request_id is NULL: never a duplicate, so always stored
    stored = storage.store(session, values, model, sample_ids, event)
    assert stored is not None
    storage.REQUESTS_STORED.note(session, model.id)


def _original(session: Session, srid: str, digest: str, client: Client) -> ErasureRequest:
    existing = session.scalar(
        select(ErasureRequest).where(ErasureRequest.subject_request_id == srid)
    )
    if existing is None:
        raise Conflict(f"subject_request_id {srid} is being submitted concurrently; retry")
    if existing.model_id is not None:
        ref = model_ref(session=session, id=existing.model_id)
        shown = ref is not None and client.may_use_model(ref.name)
    else:
        shown = visible(session, existing, client)
    if not shown:  # another portal's request: nothing about it, not even its id
        raise Conflict(f"subject_request_id {srid} cannot be used; send a new one")
    if existing.model_id is not None or existing.selector_digest != digest:
        raise Conflict(
            f"subject_request_id {srid} was already used for a different request",
            existing_request_id=existing.id,
        )
    return existing


def visible(session: Session, parent: ErasureRequest, client: Client) -> bool:
    """Whether a client may see a fan-out parent: an unrestricted key, or one that may use
    every model it fanned out to (a parent with no child: the key that submitted it)."""
    if client.models is None:
        return True
    kids = children_of(session=session, parent_ids=[parent.id])[parent.id]
    if not kids:
        return parent.client == client.name
    return all(client.may_use_model(name) for _, name in kids)
