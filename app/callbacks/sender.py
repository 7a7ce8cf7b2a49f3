"""Deliver due callbacks: claim, POST (signed), record the attempt, retry with backoff.

A sender claims due deliveries with a conditional UPDATE that pushes their
`next_attempt_at` past the request timeout (a lease), so concurrent senders (API process,
several Celery workers) never send the same attempt twice, and a sender that dies
mid-flight leaves the delivery due again once the lease ends. Each attempt is recorded
(status code or error, time, duration) in its own transaction and audited:
`callback.delivered`, `callback.attempt_failed` (a retry follows) or `callback.failed`
(attempts exhausted, target refused, or answered 410 Gone).

The target is checked against the allow-list again right before each attempt, since DNS
answers can change after submission, and the attempt connects to the address that check
approved (no second lookup: DNS rebinding cannot slip in between); redirects are not
followed and proxies from the environment are not used.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from sqlalchemy import CursorResult, exists, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from app.audit import checkpoints
from app.audit import service as audit
from app.callbacks import signing, targets
from app.callbacks.models import (
    CallbackAttempt,
    CallbackDelivery,
    DeliveryProtocol,
    DeliveryStatus,
    ModelWebhook,
)
from app.core.config import Settings
from app.core.db import session_scope, utcnow
from app.core.store import open_settings_store
from app.opendsr import keys as opendsr_keys

log = logging.getLogger("lethe.callbacks")
ACTOR = "system:callbacks"
USER_AGENT = "Lethe-Callbacks/1"


@dataclass(frozen=True)
class _Claimed:
    id: str
    url: str
    body: str
    protocol: DeliveryProtocol
    event: str
    request_id: str | None
    webhook_id: str | None


@dataclass(frozen=True)
class _Result:
    status_code: int | None
    error: str | None
    duration_ms: int
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def backoff_s(attempt: int, settings: Settings) -> float:
    """Delay after failed attempt n: base * 2**(n-1), capped, with equal jitter."""
    delay = min(
        settings.callback_backoff_max_s, settings.callback_backoff_base_s * 2.0 ** (attempt - 1)
    )
    return delay / 2 + random.uniform(0, delay / 2)


_EARLIER = aliased(CallbackDelivery)


def _claim_due(session: Session, settings: Settings, limit: int) -> list[_Claimed]:
    """Due deliveries, leased to this sender. A request's event waits while an earlier one
    to the same target is still pending (being retried), so a portal gets them in order."""
    now = utcnow()
    lease = now + timedelta(seconds=settings.callback_timeout_s + 30)
    waiting = exists().where(
        _EARLIER.request_id == CallbackDelivery.request_id,
        _EARLIER.url == CallbackDelivery.url,
        _EARLIER.status == DeliveryStatus.pending,
        _EARLIER.sequence < CallbackDelivery.sequence,
    )
    due = session.execute(
        select(CallbackDelivery.id, CallbackDelivery.next_attempt_at)
        .where(
            CallbackDelivery.status == DeliveryStatus.pending,
            CallbackDelivery.next_attempt_at <= now,
            ~waiting,
        )
        .order_by(CallbackDelivery.next_attempt_at)
        .limit(limit)
    ).all()
    claimed = []
    for delivery_id, due_at in due:
        result = session.execute(
            update(CallbackDelivery)
            .where(
                CallbackDelivery.id == delivery_id,
                CallbackDelivery.status == DeliveryStatus.pending,
                CallbackDelivery.next_attempt_at == due_at,
            )
            .values(next_attempt_at=lease)
        )
        if cast(CursorResult[Any], result).rowcount != 1:
            continue  # another sender took it
        d = session.get(CallbackDelivery, delivery_id, populate_existing=True)
        assert d is not None
        claimed.append(
            _Claimed(d.id, d.url, d.body, d.protocol, d.event, d.request_id, d.webhook_id)
        )
    return claimed


def _secret(c: _Claimed, settings: Settings) -> bytes:
    if c.webhook_id is not None:
        return signing.webhook_secret(settings, c.webhook_id)
    return signing.request_callback_secret(settings)


def _pinned(url: str, address: targets.IPAddress) -> tuple[httpx.URL, dict[str, Any]]:
    """`url` with its host replaced by the checked address; for https the host name is
    kept for SNI and certificate verification."""
    parsed = httpx.URL(url)
    extensions: dict[str, Any] = {}
    if parsed.scheme == "https":
        extensions["sni_hostname"] = parsed.host
    return parsed.copy_with(host=str(address)), extensions


def audit_reference(store: Any, settings: Settings) -> dict[str, Any]:
    """The newest signed audit checkpoint and where to fetch it (`checkpoints.reference`);
    without it when the store does not answer: the callback goes out all the same."""
    try:
        return checkpoints.reference(store if store is not None else open_settings_store(settings))
    except Exception:
        log.warning("no audit checkpoint for callbacks: the store did not answer", exc_info=True)
        return checkpoints.reference(None)


def with_audit(body: str, protocol: DeliveryProtocol, reference: dict[str, Any]) -> str:
    """The body with the audit reference added on its first attempt: as `audit` of a
    Standard Webhooks payload, in the processor's extension of an OpenDSR status. A body
    that has one already (a retry) is sent unchanged: a retry is the same message."""
    payload = json.loads(body)
    holders = (
        list(payload.get("extensions", {}).values())
        if protocol == DeliveryProtocol.opendsr
        else [payload]
    )
    if not holders or any("audit" in h for h in holders):
        return body
    for holder in holders:
        holder["audit"] = reference
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _send(http: httpx.Client, c: _Claimed, settings: Settings) -> _Result:
    try:
        checked = targets.check(c.url, settings)
    except targets.TargetUnresolvable as exc:
        return _Result(None, str(exc)[:1024], 0)
    if checked.refused or checked.address is None:
        return _Result(None, f"target refused: {checked.refused}"[:1024], 0, permanent=True)
    body = c.body.encode()
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        **signing.headers(_secret(c, settings), c.id, int(time.time()), body),
    }
    if c.protocol == DeliveryProtocol.opendsr:
        headers.update(opendsr_keys.signed_headers(settings, body))
    url, extensions = _pinned(c.url, checked.address)
    headers["host"] = urlsplit(c.url).netloc.rsplit("@", 1)[-1]
    started = time.perf_counter()
    try:
        resp = http.post(url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        ms = int((time.perf_counter() - started) * 1000)
        return _Result(None, f"{exc.__class__.__name__}: {exc}"[:1024], ms)
    ms = int((time.perf_counter() - started) * 1000)
    if 200 <= resp.status_code < 300:
        return _Result(resp.status_code, None, ms)
    return _Result(
        resp.status_code, f"HTTP {resp.status_code}", ms, permanent=resp.status_code == 410
    )


def _record(session: Session, c: _Claimed, result: _Result, settings: Settings) -> None:
    d = session.get(CallbackDelivery, c.id, with_for_update=True, populate_existing=True)
    if d is None or d.status != DeliveryStatus.pending:
        return
    now = utcnow()
    d.body = c.body  # as sent, with its audit checkpoint: retries send the same bytes
    d.attempts += 1
    d.last_status_code, d.last_error = result.status_code, result.error
    session.add(
        CallbackAttempt(
            delivery_id=d.id,
            number=d.attempts,
            attempted_at=now,
            duration_ms=result.duration_ms,
            status_code=result.status_code,
            error=result.error,
        )
    )
    data: dict[str, Any] = {
        "delivery": d.id,
        "event": d.event,
        "target": targets.origin(d.url),
        "attempt": d.attempts,
        "status_code": result.status_code,
    }
    subject = f"request:{d.request_id}" if d.request_id else f"webhook:{d.webhook_id}"
    if result.ok:
        d.status, d.delivered_at = DeliveryStatus.delivered, now
        type_ = "callback.delivered"
    elif result.permanent or d.attempts >= settings.callback_max_attempts:
        d.status = DeliveryStatus.failed
        type_, data["error"] = "callback.failed", result.error
    else:
        d.next_attempt_at = now + timedelta(seconds=backoff_s(d.attempts, settings))
        type_, data["error"] = "callback.attempt_failed", result.error
        data["next_attempt_at"] = d.next_attempt_at.isoformat()
    audit.append(session=session, type=type_, actor=ACTOR, subject=subject, data=data)


def _drop_deleted_webhooks(session: Session, claimed: list[_Claimed]) -> list[_Claimed]:
    hook_ids = {c.webhook_id for c in claimed if c.webhook_id}
    if not hook_ids:
        return claimed
    gone = set(
        session.scalars(
            select(ModelWebhook.id).where(
                ModelWebhook.id.in_(hook_ids), ModelWebhook.deleted_at.is_not(None)
            )
        )
    )
    return [c for c in claimed if c.webhook_id not in gone]


def deliver_due(
    *,
    session_factory: sessionmaker[Session],
    settings: Settings,
    limit: int = 100,
    store: Any = None,
) -> int:
    """Send every delivery that is due now (up to `limit`), each with the newest signed
    audit checkpoint of `store` (the settings' store when None); returns how many were
    tried."""
    with session_scope(session_factory, None) as s:
        claimed = _drop_deleted_webhooks(s, _claim_due(s, settings, limit))
    if not claimed:
        return 0
    reference = audit_reference(store, settings)
    with httpx.Client(
        timeout=settings.callback_timeout_s, follow_redirects=False, trust_env=False
    ) as http:
        for c in claimed:
            c = replace(c, body=with_audit(c.body, c.protocol, reference))
            result = _send(http, c, settings)
            if not result.ok:
                log.info("callback %s to %s failed: %s", c.id, targets.origin(c.url), result.error)
            with session_scope(session_factory, None) as s:
                _record(s, c, result, settings)
    return len(claimed)
