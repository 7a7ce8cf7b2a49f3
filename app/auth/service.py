"""API keys: created with the CLI, shown once, stored as sha256 of their secret part.

A key reads `lethe_<prefix>_<secret>`. The prefix finds the row; the secret's hash is
compared in constant time. Keys are 256-bit random tokens, so a fast hash is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from app.auth.models import ApiKey
from app.core.db import utcnow
from app.core.errors import NotFound, Unprocessable

SCOPES = ("erasure:write", "erasure:read", "models:read", "models:write", "audit:read", "admin")


@dataclass(frozen=True)
class Client:
    """Who is calling: a key's name, its scopes and the models it may act on."""

    key_id: int
    name: str
    scopes: frozenset[str]
    models: frozenset[str] | None

    @property
    def actor(self) -> str:
        return f"key:{self.name}"

    def has_scope(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def may_use_model(self, model: str) -> bool:
        return self.models is None or model in self.models


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    *, session: Session, name: str, scopes: list[str], models: list[str] | None = None
) -> tuple[ApiKey, str]:
    """Create a key; returns the row and the full key, which is never stored."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise Unprocessable(f"unknown or missing scopes {unknown}; choose from {list(SCOPES)}")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    row = ApiKey(
        name=name,
        prefix=prefix,
        secret_hash=_hash(secret),
        scopes=sorted(set(scopes)),
        models=sorted(set(models)) if models else None,
    )
    session.add(row)
    session.flush()
    return row, f"lethe_{prefix}_{secret}"


_KEYS = ApiKey.__table__
# Built once (its cache key too): every authenticated call runs it.
_BY_PREFIX = select(
    _KEYS.c.id,
    _KEYS.c.name,
    _KEYS.c.secret_hash,
    _KEYS.c.scopes,
    _KEYS.c.models,
    _KEYS.c.revoked_at,
).where(_KEYS.c.prefix == bindparam("prefix"))


def authenticate(*, session: Session, token: str) -> Client | None:
    """The client a presented key belongs to, or None (unknown, malformed or revoked)."""
    parts = token.split("_", 2)
    if len(parts) != 3 or parts[0] != "lethe":
        return None
    _, prefix, secret = parts
    row = session.execute(_BY_PREFIX, {"prefix": prefix}).one_or_none()
    expected = row.secret_hash if row is not None else _hash("")
    ok = hmac.compare_digest(expected, _hash(secret))
    if row is None or not ok or row.revoked_at is not None:
        return None
    return Client(
        row.id,
        row.name,
        frozenset(row.scopes),
        frozenset(row.models) if row.models is not None else None,
    )


def list_keys(*, session: Session) -> list[ApiKey]:
    return list(session.scalars(select(ApiKey).order_by(ApiKey.id)))


def revoke_key(*, session: Session, prefix: str) -> ApiKey:
    row = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if row is None:
        raise NotFound(f"no API key with prefix {prefix!r}")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    return row


def client_of_key(*, session: Session, key_id: int, prefix: str) -> Client | None:
    """The client of a key already authenticated once (a console session), unless revoked."""
    row = session.get(ApiKey, key_id)
    if row is None or row.prefix != prefix or row.revoked_at is not None:
        return None
    models = frozenset(row.models) if row.models is not None else None
    return Client(row.id, row.name, frozenset(row.scopes), models)
