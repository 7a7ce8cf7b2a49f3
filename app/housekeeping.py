"""Housekeeping: the periodic safety net, the same on Celery (beat task `lethe.housekeeping`)
and in the embedded worker (its tick), every `LETHE_HOUSEKEEPING_INTERVAL_S`.

What follows a commit is normally done at once (`app.core.after_commit`); housekeeping
does it again for whatever a crash, a lost message or a process without a broker left
behind, and what only time makes due:

1. reap: requeue (or fail) jobs whose worker stopped beating; re-dispatch queued jobs
   nobody picked up; schedule every model with waiting requests (`app.jobs.reaper`);
2. seal pending audit events (`app.audit.sealer.seal_pending`);
3. purge expired idempotency keys (`app.idempotency.service.purge_expired`);
4. deliver due callbacks and webhooks, retries included (`app.callbacks.sender`).

Each step has its own transaction; one failing is logged and does not stop the others
(the next run retries it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from app.audit.sealer import seal_pending
from app.callbacks.sender import deliver_due
from app.core.after_commit import Dispatcher
from app.core.config import Settings
from app.core.db import session_scope
from app.idempotency.service import purge_expired
from app.jobs.reaper import reap

log = logging.getLogger("lethe.housekeeping")


@dataclass(frozen=True)
class Housekeeping:
    """What one run did (-1: the step failed and was logged)."""

    redispatched: int
    sealed: int
    purged_keys: int
    callbacks_tried: int


def _step(name: str, work: Callable[[], int]) -> int:
    try:
        return work()
    except Exception:
        log.exception("housekeeping: %s failed", name)
        return -1


def housekeeping(
    *, session_factory: sessionmaker[Session], dispatcher: Dispatcher | None, settings: Settings
) -> Housekeeping:
    def reap_jobs() -> int:
        with session_scope(session_factory, dispatcher) as s:
            return len(reap(session=s, settings=settings))

    def purge() -> int:
        with session_scope(session_factory, None) as s:
            return purge_expired(session=s)

    def deliver() -> int:
        tried = 0
        while n := deliver_due(session_factory=session_factory, settings=settings):
            tried += n
        return tried

    return Housekeeping(
        redispatched=_step("reap", reap_jobs),
        sealed=_step("seal", lambda: seal_pending(session_factory)),
        purged_keys=_step("purge idempotency keys", purge),
        callbacks_tried=_step("deliver callbacks", deliver),
    )
