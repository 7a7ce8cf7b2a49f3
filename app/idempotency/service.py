"""Idempotency keys (IETF draft-ietf-httpapi-idempotency-key-header).

    begin(...) ─► Started      first use: a `processing` row is committed, the request runs
              ├─► Replay       same key, same fingerprint, completed: the stored response
              ├─► InProgress   same key, first request still running → 409
              └─► Mismatch     same key, another method/path/body → 422

Keys are scoped to the API key that sent them and expire after `idempotency_ttl_s`.
A response is stored unless it is a 5xx (the client may then retry with the same key).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import utcnow
from app.idempotency.models import IdempotencyKey

PROCESSING, COMPLETED = "processing", "completed"
_NOT_STORED = frozenset({"date", "server", "x-request-id", "content-length"})


@dataclass(frozen=True)
class Outcome:
    kind: str  # started | replay | in_progress | mismatch
    status_code: int | None = None
    headers: list[list[str]] | None = None
    body: bytes | None = None


def fingerprint(method: str, path: str, body: bytes) -> str:
    h = hashlib.sha256()
    for part in (method.encode(), path.encode(), body):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


def begin(
    factory: sessionmaker[Session],
    *,
    client_id: int,
    key: str,
    method: str,
    path: str,
    digest: str,
    ttl_s: int,
) -> Outcome:
    now = utcnow()
    for _ in range(3):
        with factory() as session:
            row = session.get(IdempotencyKey, (client_id, key))
            if row is not None and row.expires_at <= now:
                session.delete(row)
                session.commit()
                continue
            if row is not None:
                return _existing(row, method, path, digest)
            session.add(
                IdempotencyKey(
                    client_id=client_id,
                    key=key,
                    method=method,
                    path=path,
                    fingerprint=digest,
                    state=PROCESSING,
                    created_at=now,
                    expires_at=now + timedelta(seconds=ttl_s),
                )
            )
            try:
                session.commit()
            except IntegrityError:  # a concurrent first use won the insert: look again
                session.rollback()
                continue
            return Outcome("started")
    raise RuntimeError("idempotency key could not be claimed")


def _existing(row: IdempotencyKey, method: str, path: str, digest: str) -> Outcome:
    if (row.method, row.path, row.fingerprint) != (method, path, digest):
        return Outcome("mismatch")
    if row.state == PROCESSING:
        return Outcome("in_progress")
    return Outcome("replay", row.status_code, row.headers["list"] if row.headers else [], row.body)


def finish(
    factory: sessionmaker[Session],
    *,
    client_id: int,
    key: str,
    status_code: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
) -> None:
    """Store the response, or forget the key after a 5xx so the client can retry."""
    with factory() as session:
        row = session.get(IdempotencyKey, (client_id, key))
        if row is None:
            return
        if status_code >= 500:
            session.delete(row)
        else:
            kept: list[list[str]] = [
                [k.decode("latin-1"), v.decode("latin-1")]
                for k, v in headers
                if k.decode("latin-1").lower() not in _NOT_STORED
            ]
            row.state, row.status_code, row.body = COMPLETED, status_code, body
            row.headers = {"list": kept}
        session.commit()


def abandon(factory: sessionmaker[Session], *, client_id: int, key: str) -> None:
    with factory() as session:
        session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.client_id == client_id, IdempotencyKey.key == key
            )
        )
        session.commit()


def purge_expired(*, session: Session) -> int:
    """Delete expired keys (called by the periodic tick); returns how many."""
    q = select(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow())
    rows = list(session.scalars(q))
    for r in rows:
        session.delete(r)
    return len(rows)
