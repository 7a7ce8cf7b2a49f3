"""The audit chain: every event is a row whose hash covers its content and the previous hash.

Appends lock the single `audit_head` row, so concurrent writers queue up instead of
forking the chain. `verify` walks the chain from the start and reports the first link
that does not hold. No personal data goes in: subjects are referenced by request id.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.audit.models import AuditEvent, AuditHead
from app.core.db import utcnow

GENESIS = "0" * 64


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


def append(
    *,
    session: Session,
    type: str,
    actor: str,
    subject: str | None = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction."""
    head = session.scalar(select(AuditHead).where(AuditHead.id == 1).with_for_update())
    if head is None:
        head = AuditHead(id=1, seq=0, hash=GENESIS)
        session.add(head)
    fields: dict[str, Any] = {
        "seq": head.seq + 1,
        "created_at": utcnow(),
        "type": type,
        "actor": actor,
        "subject": subject,
        "data": json.loads(json.dumps(data or {}, default=str)),
        "prev_hash": head.hash,
    }
    digest = event_hash(**fields)
    event = AuditEvent(**fields, hash=digest)
    session.add(event)
    head.seq, head.hash = fields["seq"], digest
    session.flush()
    return event


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int
    head_seq: int
    first_broken_seq: int | None = None
    reason: str | None = None


def _walk(session: Session, batch: int = 1000) -> Iterator[AuditEvent]:
    last = 0
    while True:
        rows = list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.seq > last)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
        )
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(*, session: Session) -> Verification:
    prev, expected_seq, checked = GENESIS, 1, 0
    for ev in _walk(session):
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
    head = session.get(AuditHead, 1)
    head_seq = head.seq if head else 0
    if head is not None and (head.seq != checked or head.hash != prev):
        return Verification(False, checked, head_seq, checked + 1, "chain is shorter than its head")
    return Verification(True, checked, head_seq)


def list_events(
    *,
    session: Session,
    after: int = 0,
    limit: int = 100,
    type: str | None = None,
    subject: str | None = None,
) -> list[AuditEvent]:
    q = select(AuditEvent).where(AuditEvent.seq > after)
    if type:
        q = q.where(AuditEvent.type == type)
    if subject:
        q = q.where(AuditEvent.subject == subject)
    return list(session.scalars(q.order_by(AuditEvent.seq).limit(limit)))
