"""The callback outbox: what to tell whom, written in the transaction that changed it.

`request_status_changed` is called wherever an erasure request's status changes (submit,
cancel, the scheduler, claim, publish, a failed attempt); `model_event` where a version is
published or an alias moves. Each writes one `CallbackDelivery` per target, in the
caller's transaction, so a status change and its callbacks commit (or vanish) together.
After the commit the sender is woken (`CALLBACKS_QUEUED`: the dispatcher's
`deliver_callbacks`); housekeeping delivers whatever is due in any case, so nothing
depends on that. Webhook subscriptions and the delivery history: `app.callbacks.webhooks`.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from app.callbacks.models import (
    CallbackDelivery,
    DeliveryProtocol,
    DeliveryStatus,
    ModelWebhook,
)
from app.core.after_commit import Dispatcher, Signal
from app.core.db import utcnow
from app.erasure_requests import children
from app.erasure_requests.models import ErasureRequest
from app.opendsr.mapping import rfc3339, status_body
from app.opendsr.models import OpenDSRRequest
from app.registry.models import Model

log = logging.getLogger("lethe.callbacks")

REQUEST_STATUS_CHANGED = "request.status_changed"
VERSION_PUBLISHED = "version.published"
ALIAS_MOVED = "alias.moved"
MODEL_EVENTS = (VERSION_PUBLISHED, ALIAS_MOVED)


def _wake_sender(dispatcher: Dispatcher, _: Sequence[object]) -> None:
    dispatcher.deliver_callbacks()


CALLBACKS_QUEUED = Signal("callbacks_queued", send=_wake_sender)
"""Noted by a transaction that queued deliveries: its commit wakes the sender."""


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)


def _stamp_ms(ts: datetime) -> str:
    """RFC 3339 in UTC with milliseconds: a portal can order events one millisecond apart."""
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _envelope(type_: str, data: dict[str, Any], sequence: int | None = None) -> str:
    """The Standard Webhooks payload shape: type, timestamp, data (and a request's event
    `sequence`)."""
    payload: dict[str, Any] = {"type": type_, "timestamp": _stamp_ms(utcnow())}
    if sequence is not None:
        payload["sequence"] = sequence
    return _dumps({**payload, "data": data})


def _next_sequences(session: Session, ids: Sequence[str]) -> dict[str, int]:
    """The sequence number each request's next event gets."""
    rows = session.execute(
        select(CallbackDelivery.request_id, func.max(CallbackDelivery.sequence))
        .where(CallbackDelivery.request_id.in_(ids))
        .group_by(CallbackDelivery.request_id)
    )
    last = {rid: n or 0 for rid, n in rows if rid is not None}
    return {rid: last.get(rid, 0) + 1 for rid in ids}


def _request_data(
    req: ErasureRequest, model_name: str | None, kids: list[dict[str, Any]] | None
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": req.id,
        "subject_request_id": req.subject_request_id,
        "model": model_name,
        "status": req.status.value,
        "status_reason": req.status_reason,
        "result_version": req.result_version,
        "job_id": req.job_id,
        "due_at": rfc3339(req.due_at),
        "completed_at": rfc3339(req.completed_at) if req.completed_at else None,
    }
    if kids is not None:  # a fan-out parent: each model's child, with its result version
        data["models"] = kids
    return data


def _add(session: Session, **values: Any) -> CallbackDelivery:
    now = utcnow()
    delivery = CallbackDelivery(
        id=f"msg_{uuid.uuid4().hex}",
        status=DeliveryStatus.pending,
        attempts=0,
        next_attempt_at=now,
        created_at=now,
        **values,
    )
    session.add(delivery)
    CALLBACKS_QUEUED.note(session)
    return delivery


def request_status_changed(
    *, session: Session, request_ids: Sequence[str]
) -> list[CallbackDelivery]:
    """Queue a status callback to every target of each request, reporting its status now."""
    if not request_ids:
        return []
    ids = list(dict.fromkeys(request_ids))
    rows = session.execute(
        select(ErasureRequest, Model.name)
        .outerjoin(Model, Model.id == ErasureRequest.model_id)  # a fan-out parent has none
        # JSON is stored as text on every backend; most requests have no callback target
        .where(ErasureRequest.id.in_(ids), cast(ErasureRequest.callback_urls, String) != "[]")
        .execution_options(populate_existing=True)
    ).all()
    if not rows:
        return []
    opendsr = {
        o.request_id: o
        for o in session.scalars(select(OpenDSRRequest).where(OpenDSRRequest.request_id.in_(ids)))
    }
    out = []
    sequences = _next_sequences(session, [req.id for req, _ in rows])
    kids = children.entries(
        session=session, parent_ids=[req.id for req, _ in rows if children.is_parent(req)]
    )
    for req, model_name in rows:
        sequence = sequences[req.id]
        mine = kids.get(req.id)
        for url in req.callback_urls or []:
            if req.id in opendsr:
                protocol = DeliveryProtocol.opendsr
                domain = opendsr[req.id].processor_domain
                status = status_body(
                    req=req,
                    model_name=model_name,
                    domain=domain,
                    status_callback_url=url,
                    children=mine,
                )
                status["extensions"][domain].update(
                    sequence=sequence, timestamp=_stamp_ms(utcnow())
                )
                body = _dumps(status)
            else:
                protocol = DeliveryProtocol.webhooks
                body = _envelope(
                    REQUEST_STATUS_CHANGED, _request_data(req, model_name, mine), sequence
                )
            out.append(
                _add(
                    session,
                    event=REQUEST_STATUS_CHANGED,
                    protocol=protocol,
                    request_id=req.id,
                    sequence=sequence,
                    url=url,
                    body=body,
                )
            )
    return out


def model_event(
    *, session: Session, model: Model, type: str, data: dict[str, Any]
) -> list[CallbackDelivery]:
    """Queue `type` (version.published, alias.moved) to the model's webhooks that want it."""
    hooks = session.scalars(
        select(ModelWebhook).where(
            ModelWebhook.model_id == model.id, ModelWebhook.deleted_at.is_(None)
        )
    ).all()
    body = _envelope(type, {"model": model.name, **data})
    return [
        _add(
            session,
            event=type,
            protocol=DeliveryProtocol.webhooks,
            webhook_id=hook.id,
            url=hook.url,
            body=body,
        )
        for hook in hooks
        if type in hook.events
    ]
