"""The audit trail: every event is a row whose hash covers its content and the previous hash.

An event is written in the transaction of the change it records (`append`): it is stored,
or not, together with that change, and a writer never waits for another. It enters the
hash chain when it is sealed (`seal`): the sealer locks the single `audit_head` row and
moves the pending events into `audit_events` in batches, oldest first, so the chain
cannot fork and the lock is held once per batch, not once per request. Every API process
runs a sealer (`app.audit.sealer`) that is woken after each commit that stored events;
readers of the trail seal first, so they see every committed event. `verify` walks the
chain from the start and reports the first link that does not hold. No personal data
goes in: subjects are referenced by request id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import (
    ColumnElement,
    FromClause,
    Insert,
    Row,
    Table,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent, AuditHead, AuditPending
from app.core.after_commit import Signal
from app.core.db import utcnow

GENESIS = "0" * 64
STORED = Signal("audit_stored")
"""Noted by a transaction that stored events: its commit wakes the process's sealer."""


def _stamp(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(
    *,
    seq: int,
    created_at: datetime,
    type: str,
    actor: str,
    subject: str | None,
    data: dict[str, Any],
    prev_hash: str,
) -> str:
    canonical = json.dumps(
        {
            "seq": seq,
            "created_at": _stamp(created_at),
            "type": type,
            "actor": actor,
            "subject": subject,
            "data": data,
            "prev_hash": prev_hash,
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


_PENDING = cast(Table, AuditPending.__table__)
_FIELDS = ("created_at", "type", "actor", "subject", "data")
# Bind parameters named audit_<field>, so a caller's statement can carry an event too.
_EVENT = {f: bindparam(f"audit_{f}", type_=_PENDING.c[f].type) for f in _FIELDS}
_INSERT_PENDING = insert(_PENDING).values(_EVENT)


def event_params(
    *, type: str, actor: str, subject: str | None = None, data: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The bind parameters of one event, for `append` or a statement made with
    `pending_from`."""
    return {
        "audit_created_at": utcnow(),
        "audit_type": type,
        "audit_actor": actor,
        "audit_subject": subject,
        "audit_data": json.loads(json.dumps(data or {}, default=str)),
    }


def append(
    *,
    session: Session,
    type: str,
    actor: str,
    subject: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    """Store one event in the caller's transaction; it is sealed into the chain after the
    commit."""
    session.execute(
        _INSERT_PENDING, event_params(type=type, actor=actor, subject=subject, data=data)
    )
    STORED.note(session)


def pending_from(source: FromClause) -> Insert:
    """An INSERT of one pending event per row of `source` (a CTE of the caller's statement),
    taking the event from the `event_params` bind parameters: a change and its event in one
    statement. The caller notes `STORED` on its session once the statement has run."""
    return insert(_PENDING).from_select(
        list(_FIELDS), select(*(_EVENT[f] for f in _FIELDS)).select_from(source)
    )


# Sealing statements, built once.
_EVENTS = cast(Table, AuditEvent.__table__)
_LOCK_HEAD = {
    skip: select(AuditHead).where(AuditHead.id == 1).with_for_update(skip_locked=skip)
    for skip in (False, True)
}
_OLDEST_PENDING = (
    select(_PENDING.c.id, *(_PENDING.c[f] for f in _FIELDS))
    .order_by(_PENDING.c.id)
    .limit(bindparam("batch"))
)
_INSERT_EVENTS = insert(_EVENTS)
_DELETE_PENDING = delete(_PENDING).where(_PENDING.c.id.in_(bindparam("ids", expanding=True)))


def seal(*, session: Session, wait: bool = True, batch: int = 1000) -> int:
    """Move every committed pending event into the chain, oldest first, in the caller's
    transaction. Returns how many were sealed.

    With `wait=False` a sealer already at work is not waited for (it seals these too, or
    the next wake-up does) and 0 is returned.
    """
    head = session.scalar(_LOCK_HEAD[not wait])
    if head is None:
        if not wait:
            return 0
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    sealed = 0
    while True:
        rows = session.execute(_OLDEST_PENDING, {"batch": batch}).all()
        if not rows:
            break
        events = []
        for row in rows:
            fields: dict[str, Any] = {
                "seq": head.seq + 1,
                **{f: row._mapping[f] for f in _FIELDS},
                "prev_hash": head.hash,
            }
            digest = event_hash(**fields)
            events.append({**fields, "hash": digest})
            head.seq, head.hash = fields["seq"], digest
        session.execute(_INSERT_EVENTS, events)
        session.execute(_DELETE_PENDING, {"ids": [row.id for row in rows]})
        sealed += len(rows)
        if len(rows) < batch:
            break
    session.flush()
    return sealed


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_seq: int
    first_broken_seq: int | None = None
    reason: str | None = None


def _walk(
    session: Session, *, after: int, until: int | None, batch: int = 2000
) -> Iterator[Row[Any]]:
    """Events after seq `after` (up to `until`), in seq order, as Core rows: no ORM objects."""
    last = after
    while True:
        q = select(_EVENTS).where(_EVENTS.c.seq > last)
        if until is not None:
            q = q.where(_EVENTS.c.seq <= until)
        rows = session.execute(q.order_by(_EVENTS.c.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def check_chain(
    *,
    session: Session,
    after: int = 0,
    prev_hash: str = GENESIS,
    until_head: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Verification:
    """Check every link and every event's content from event `after` + 1 to the head.

    `after` and `prev_hash` anchor the walk: 0 and the genesis hash walk the whole chain; a
    checkpoint's size and head hash walk only what it does not cover (the caller checks
    that the log still holds what the checkpoint signed). With `until_head` only the
    events up to the head as read first are walked (a walk that does not lock the head,
    while the sealer goes on). `checked` counts the events walked; `progress` is called
    with it after every batch."""
    head = session.get(AuditHead, 1)
    head_seq = head.seq if head else 0
    head_hash = head.hash if head else GENESIS
    prev, expected_seq, checked = prev_hash, after + 1, 0
    for ev in _walk(session, after=after, until=head_seq if until_head and head else None):
        if ev.seq != expected_seq:
            return Verification(False, checked, ev.seq, expected_seq, "missing event (gap in seq)")
        if ev.prev_hash != prev:
            return Verification(False, checked, ev.seq, ev.seq, "prev_hash does not match")
        recomputed = event_hash(
            seq=ev.seq,
            created_at=ev.created_at,
            type=ev.type,
            actor=ev.actor,
            subject=ev.subject,
            data=ev.data,
            prev_hash=ev.prev_hash,
        )
        if recomputed != ev.hash:
            return Verification(False, checked, ev.seq, ev.seq, "content does not match its hash")
        prev, expected_seq, checked = ev.hash, expected_seq + 1, checked + 1
        if progress is not None and checked % 2000 == 0:
            progress(checked)
    if progress is not None:
        progress(checked)
    if head is not None and (head_seq != expected_seq - 1 or head_hash != prev):
        return Verification(
            False, checked, head_seq, expected_seq, "chain is shorter than its head"
        )
    return Verification(True, checked, head_seq)


def verify(*, session: Session) -> Verification:
    """Seal what is pending, then check every link of the chain and its head."""
    seal(session=session)
    return check_chain(session=session)


def visible_to(models: frozenset[str]) -> ColumnElement[bool]:
    """The events a key limited to `models` may read: those about the models, their
    requests and their jobs. Nothing else (other portals' events, API keys) exists for it."""
    from app.erasure_requests.models import ErasureRequest
    from app.jobs.models import Job
    from app.registry.models import Model

    names = sorted(models)
    ids = select(Model.id).where(Model.name.in_(names))
    return or_(
        AuditEvent.subject.in_([f"model:{n}" for n in names]),
        AuditEvent.subject.in_(
            select(literal("request:") + ErasureRequest.id).where(ErasureRequest.model_id.in_(ids))
        ),
        AuditEvent.subject.in_(select(literal("job:") + Job.id).where(Job.model_id.in_(ids))),
    )


def _filtered(
    q: Any, *, type: str | None, subject: str | None, models: frozenset[str] | None
) -> Any:
    if models is not None:
        q = q.where(visible_to(models))
    if type:
        q = q.where(AuditEvent.type == type)
    if subject:
        q = q.where(AuditEvent.subject == subject)
    return q


def list_events(
    *,
    session: Session,
    after: int = 0,
    limit: int = 100,
    type: str | None = None,
    subject: str | None = None,
    models: frozenset[str] | None = None,
) -> list[AuditEvent]:
    """Events in chain order; with `models`, only those `visible_to` a key limited to them."""
    q = _filtered(
        select(AuditEvent).where(AuditEvent.seq > after), type=type, subject=subject, models=models
    )
    return list(session.scalars(q.order_by(AuditEvent.seq).limit(limit)))


def event_batches(
    *,
    session: Session,
    type: str | None = None,
    subject: str | None = None,
    models: frozenset[str] | None = None,
    batch: int = 2000,
) -> Iterator[list[Row[Any]]]:
    """Every matching event in chain order, `batch` Core rows at a time (keyset pages, no
    ORM objects): for exports of the whole trail."""
    after = 0
    while True:
        q = _filtered(
            select(_EVENTS).where(_EVENTS.c.seq > after), type=type, subject=subject, models=models
        )
        rows = list(session.execute(q.order_by(_EVENTS.c.seq).limit(batch)).all())
        if not rows:
            return
        yield rows
        after = rows[-1].seq


def pending_count(*, session: Session) -> int:
    """Committed events not sealed yet (normally 0 within a second)."""
    return session.scalar(select(func.count()).select_from(AuditPending)) or 0
