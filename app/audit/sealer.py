"""The sealer: a thread of every API process that moves pending audit events into the chain.

It wakes after each commit that stored events (and at least every `interval_s`, which
picks up events written by Celery workers and the CLI), waits a little so that one
sealing transaction covers the commits that arrive meanwhile, and does not wait for a
sealer of another process that is already at work (that one seals these events too).
"""

from __future__ import annotations

from typing import Any

from app.audit import service
from app.core.background import BackgroundLoop
from app.core.db import session_scope


def audit_sealer(session_factory: Any, *, interval_s: float) -> BackgroundLoop:
    def seal_pending(_: set[Any]) -> None:
        with session_scope(session_factory, None) as s:
            service.seal(session=s, wait=False)

    return BackgroundLoop(
        "lethe-audit-sealer", service.STORED, seal_pending, settle_s=0.1, interval_s=interval_s
    )
