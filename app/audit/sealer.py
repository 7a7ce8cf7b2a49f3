"""The sealer: a thread of every API process that moves pending audit events into the chain.

It wakes after each commit that stored events (and at least every `interval_s`, which
picks up events written by Celery workers and the CLI), waits `settle_s` so that one
sealing transaction covers the commits that arrive meanwhile, and seals without waiting
for a sealer of another process that is already at work.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from app.audit import service
from app.core.db import session_scope

log = logging.getLogger("lethe.audit")


class AuditSealer:
    def __init__(self, session_factory: Any, *, interval_s: float, settle_s: float = 0.05):
        self.session_factory = session_factory
        self.interval_s = interval_s
        self.settle_s = settle_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        service.add_waker(self._wake.set)
        self._thread = threading.Thread(target=self._run, name="lethe-audit-sealer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        service.remove_waker(self._wake.set)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self.seal_once(wait=True)  # nothing this process stored is left for later

    def seal_once(self, *, wait: bool = False) -> int:
        try:
            with session_scope(self.session_factory, None) as s:
                return service.seal(session=s, wait=wait)
        except Exception:  # the next wake-up, or any reader, seals them
            log.exception("sealing audit events failed")
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.wait(self.settle_s):
                return
            self.seal_once()
