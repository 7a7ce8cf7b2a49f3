"""Work that follows a commit, off the request path: a transaction notes what it stored on
a `Signal`; once it has committed, the signal wakes its subscribers (a `BackgroundLoop` of
the API process), which do the follow-up work in their own transaction, once for many
commits. The periodic tick (embedded worker) or Celery beat does the same work anyway,
so a process that crashes between the commit and the follow-up loses nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("lethe.background")
_signals: list[Signal] = []


class Signal:
    def __init__(self, name: str):
        self.key = f"lethe_signal_{name}"
        self._subscribers: set[Callable[[set[Any]], None]] = set()
        _signals.append(self)

    def note(self, session: Session, *items: Hashable) -> None:
        """Record on the session's transaction that there is follow-up work (for `items`)."""
        session.info.setdefault(self.key, set()).update(items)

    def subscribe(self, callback: Callable[[set[Any]], None]) -> None:
        self._subscribers.add(callback)

    def unsubscribe(self, callback: Callable[[set[Any]], None]) -> None:
        self._subscribers.discard(callback)

    def _fire(self, session: Session) -> None:
        items = session.info.pop(self.key, None)
        if items is None:
            return
        for callback in list(self._subscribers):
            try:
                callback(items)
            except Exception:  # the periodic tick does the work anyway; never fail a commit
                log.exception("waking a subscriber of %s failed", self.key)


@event.listens_for(Session, "after_commit")
def _fire_signals(session: Session) -> None:
    for signal in _signals:
        signal._fire(session)


@event.listens_for(Session, "after_rollback")
def _drop_notes(session: Session) -> None:
    for signal in _signals:
        session.info.pop(signal.key, None)


class BackgroundLoop:
    """A daemon thread that runs `work(items)` when woken by a signal, after waiting
    `settle_s` so one run covers the commits that arrive meanwhile, and at least every
    `interval_s` (with no items) when given one."""

    def __init__(
        self,
        name: str,
        signal: Signal,
        work: Callable[[set[Any]], object],
        *,
        settle_s: float,
        interval_s: float | None = None,
    ):
        self.name, self.signal, self.work = name, signal, work
        self.settle_s, self.interval_s = settle_s, interval_s
        self._items: set[Any] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def wake(self, items: set[Any]) -> None:
        with self._lock:
            self._items |= items
        self._wake.set()

    def start(self) -> None:
        self._stop.clear()
        self.signal.subscribe(self.wake)
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        """Stop the thread, then do what is still due once more, here."""
        self.signal.unsubscribe(self.wake)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self.run_once()

    def run_once(self) -> None:
        with self._lock:
            items, self._items = self._items, set()
        try:
            self.work(items)
        except Exception:  # the next wake-up or the periodic tick retries
            log.exception("%s failed", self.name)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval_s)
            self._wake.clear()
            if self._stop.wait(self.settle_s):
                return
            self.run_once()
