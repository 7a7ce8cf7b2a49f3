"""The sealer: moves pending audit events into the chain.

`seal_pending` is the one entry point of sealing outside a reader's transaction: the
sealer thread of every API process runs it after each commit that stored events (and at
least every `interval_s`, which picks up events written by Celery workers and the CLI),
and housekeeping runs it on every tick (`app.housekeeping`), so events are sealed even
when no API process is up. It does not wait for a sealer of another process that is
already at work (that one seals these events too). Readers of the trail seal in their
own transaction first (`service.seal`), so they see every committed event.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.audit import service
from app.core.after_commit import BackgroundLoop
from app.core.db import session_scope


def seal_pending(session_factory: sessionmaker[Session]) -> int:
    """Seal what is pending, in a transaction of its own. Returns how many were sealed."""
    with session_scope(session_factory, None) as s:
        return service.seal(session=s, wait=False)


def audit_sealer(session_factory: sessionmaker[Session], *, interval_s: float) -> BackgroundLoop:
    def seal(_: set[Any]) -> None:
        seal_pending(session_factory)

    return BackgroundLoop(
        "lethe-audit-sealer", service.STORED, seal, settle_s=0.1, interval_s=interval_s
    )
