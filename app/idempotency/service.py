"""Idempotency keys (IETF draft-ietf-httpapi-idempotency-key-header), crash-safe.

    begin(...) ─► Started      first use, or a lease that ran out: this attempt holds the lease
              ├─► Replay       same key, same fingerprint, completed: the stored response
              ├─► InProgress   same key, another attempt holds an unexpired lease → 409
              └─► Mismatch     same key, another method/path/body → 422

A `processing` key is a LEASE (`idempotency_lease_s`), numbered: an attempt killed
mid-request leaves a lease that expires, and the next retry takes it over (a new lease
number) and runs the request again. The response of a request that changed something
is stored IN THE SAME TRANSACTION as the change (`complete_in`, conditional on still
holding the lease): a retry after a crash finds either the committed change together
with its stored response (and replays it), or neither (and runs it). An attempt whose
lease was taken over cannot commit. Error responses (4xx), which changed nothing, are
stored in a transaction of their own (`complete`); after a 5xx the key is forgotten.

Nothing identifying is at rest here: the fingerprint is keyed (HMAC with the secret key,
so a dump cannot be used to test guessed bodies), a response that echoes the request
body in base64 (OpenDSR's `encoded_request`) is stored with a marker in its place, and
signature headers over the body are dropped; a replay puts back the base64 of the
retry's own body (byte-identical: the fingerprint matched) and signs again.
Keys are scoped to the API key that sent them and expire after `idempotency_ttl_s`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import utcnow
from app.idempotency.models import IdempotencyKey

PROCESSING, COMPLETED = "processing", "completed"
_NOT_STORED = frozenset({"date", "server", "x-request-id", "content-length"})
SIGNED = "lethe-signed"
"""Stored in place of a signature header: the replay signs the restored body again."""
ECHO = b"\x00lethe:request-body-base64\x00"
"""Stored in place of the request body's base64 inside a response."""


@dataclass(frozen=True)
class Claim:
    """The lease an attempt holds on a key."""

    client_id: int
    key: str
    lease: int


@dataclass(frozen=True)
class Outcome:
    kind: str  # started | replay | in_progress | mismatch
    claim: Claim | None = None
    status_code: int | None = None
    headers: list[list[str]] | None = None
    body: bytes | None = None


def fingerprint(secret: str, method: str, path: str, body: bytes) -> str:
    h = hmac.new(secret.encode(), digestmod=hashlib.sha256)
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
    lease_s: float,
) -> Outcome:
    for _ in range(3):
        now = utcnow()
        with factory() as session:
            row = session.get(IdempotencyKey, (client_id, key))
            if row is not None and row.expires_at <= now:
                session.delete(row)
                session.commit()
                continue
            if row is not None:
                if (row.method, row.path, row.fingerprint) != (method, path, digest):
                    return Outcome("mismatch")
                if row.state == COMPLETED:
                    headers = row.headers["list"] if row.headers else []
                    return Outcome("replay", None, row.status_code, headers, row.body)
                if row.lease_until is not None and row.lease_until > now:
                    return Outcome("in_progress")
                # the attempt holding the lease died (or is past it): take the lease over
                took = session.execute(
                    update(IdempotencyKey)
                    .where(
                        IdempotencyKey.client_id == client_id,
                        IdempotencyKey.key == key,
                        IdempotencyKey.lease == row.lease,
                        IdempotencyKey.state == PROCESSING,
                    )
                    .values(lease=row.lease + 1, lease_until=now + timedelta(seconds=lease_s)),
                    execution_options={"synchronize_session": False},
                )
                session.commit()
                if cast(CursorResult[Any], took).rowcount:
                    return Outcome("started", Claim(client_id, key, row.lease + 1))
                continue
            session.add(
                IdempotencyKey(
                    client_id=client_id,
                    key=key,
                    method=method,
                    path=path,
                    fingerprint=digest,
                    state=PROCESSING,
                    lease=1,
                    lease_until=now + timedelta(seconds=lease_s),
                    created_at=now,
                    expires_at=now + timedelta(seconds=ttl_s),
                )
            )
            try:
                session.commit()
            except IntegrityError:  # a concurrent first use won the insert: look again
                session.rollback()
                continue
            return Outcome("started", Claim(client_id, key, 1))
    raise RuntimeError("idempotency key could not be claimed")


def stored_form(
    headers: list[tuple[bytes, bytes]], body: bytes, request_body: bytes, signed: frozenset[str]
) -> tuple[list[list[str]], bytes]:
    """The response as stored: volatile headers dropped, signatures and echoes of the
    request body replaced by markers."""
    kept: list[list[str]] = []
    for k, v in headers:
        name = k.decode("latin-1")
        if name.lower() in _NOT_STORED:
            continue
        kept.append([name, SIGNED if name.lower() in signed else v.decode("latin-1")])
    if request_body:
        body = body.replace(base64.b64encode(request_body), ECHO)
    return kept, body


def replayed_form(body: bytes, request_body: bytes) -> bytes:
    return body.replace(ECHO, base64.b64encode(request_body)) if request_body else body


def _holding(claim: Claim) -> tuple[ColumnElement[bool], ...]:
    return (
        IdempotencyKey.client_id == claim.client_id,
        IdempotencyKey.key == claim.key,
        IdempotencyKey.lease == claim.lease,
        IdempotencyKey.state == PROCESSING,
    )


def complete_in(
    *, session: Session, claim: Claim, status_code: int, headers: list[list[str]], body: bytes
) -> bool:
    """Store the response in the caller's transaction (that of the change it answers);
    False when the lease was taken over by another attempt (the caller rolls back)."""
    done = session.execute(
        update(IdempotencyKey)
        .where(*_holding(claim))
        .values(state=COMPLETED, status_code=status_code, headers={"list": headers}, body=body),
        execution_options={"synchronize_session": False},
    )
    return bool(cast(CursorResult[Any], done).rowcount)


def complete(
    factory: sessionmaker[Session],
    *,
    claim: Claim,
    status_code: int,
    headers: list[list[str]],
    body: bytes,
) -> None:
    """Store a response that changed nothing, or forget the key after a 5xx."""
    with factory() as session:
        if status_code >= 500:
            session.execute(delete(IdempotencyKey).where(*_holding(claim)))
        else:
            complete_in(
                session=session, claim=claim, status_code=status_code, headers=headers, body=body
            )
        session.commit()


def abandon(factory: sessionmaker[Session], *, claim: Claim) -> None:
    with factory() as session:
        session.execute(delete(IdempotencyKey).where(*_holding(claim)))
        session.commit()


def purge_expired(*, session: Session) -> int:
    """Delete expired keys (called by the periodic tick); returns how many."""
    q = select(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow())
    rows = list(session.scalars(q))
    for r in rows:
        session.delete(r)
    return len(rows)
