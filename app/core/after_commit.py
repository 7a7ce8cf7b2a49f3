"""Work that follows a commit, off the request path: the one after-commit mechanism.

A transaction notes on a `Signal` what it stored (`signal.note(session, *items)`). Once
it has committed, each noted signal

- hands its items to the session's `Dispatcher`, if the signal says how (`send`): job ids
  to run (`dispatch`), a wake-up of the callback sender (`deliver_callbacks`); and
- wakes its subscribers, `BackgroundLoop`s of the API process (the scheduler, the audit
  sealer), which do the follow-up work in their own transaction, once for many commits.

Only the outermost commit fires the notes (releasing a SAVEPOINT does not) and only
the outermost rollback drops them. Nothing here may fail a commit: an error is logged, and the
periodic housekeeping (`app.housekeeping`, run by Celery beat or the embedded worker's
tick) does the same work anyway, so a process that crashes between the commit and the
follow-up loses nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger("lethe.after_commit")
_signals: list[Signal] = []
DISPATCHER = "lethe_dispatcher"
"""The `session.info` key of the session's dispatcher (set by `app.core.db.open_session`)."""


class Dispatcher(Protocol):
    """What runs work outside the API's transactions: Celery (`workers.celery_app`), the
    embedded worker (`workers.embedded`) or nothing (`app.main.NoDispatcher`)."""

    def dispatch(self, job_id: str) -> None:
        """Run the committed job `job_id` (at least once; a duplicate is harmless)."""

    def deliver_callbacks(self) -> None:
        """Wake the callback sender: deliveries were committed."""

    def ping(self) -> bool:
        """Check the broker: True if reachable, False if this dispatcher has none (the
        health check then omits it); raises when it is unreachable."""


class Signal:
    def __init__(
        self, name: str, *, send: Callable[[Dispatcher, Sequence[Any]], None] | None = None
    ):
        self.key = f"lethe_signal_{name}"
        self.send = send
        self._subscribers: set[Callable[[set[Any]], None]] = set()
        _signals.append(self)

    def note(self, session: Session, *items: Hashable) -> None:
        """Record on the session's transaction that there is follow-up work (for `items`)."""
        noted: dict[Hashable, None] = session.info.setdefault(self.key, {})
        noted.update(dict.fromkeys(items))

    def subscribe(self, callback: Callable[[set[Any]], None]) -> None:
        self._subscribers.add(callback)

    def unsubscribe(self, callback: Callable[[set[Any]], None]) -> None:
        self._subscribers.discard(callback)

    def _fire(self, session: Session) -> None:
        noted: dict[Hashable, None] | None = session.info.pop(self.key, None)
        if noted is None:
            return
        dispatcher: Dispatcher | None = session.info.get(DISPATCHER)
        if self.send is not None and dispatcher is not None:
            try:
                self.send(dispatcher, list(noted))
            except Exception:
                log.exception("handing %s to the dispatcher failed", self.key)
        for callback in list(self._subscribers):
            try:
                callback(set(noted))
            except Exception:
                log.exception("waking a subscriber of %s failed", self.key)


@event.listens_for(Session, "after_commit")
def _fire_signals(session: Session) -> None:
    if session.in_nested_transaction():
        # SQLAlchemy fires after_commit when a SAVEPOINT is released too
        # (`session.begin_nested()`), while the transaction is still open: what it noted
        # is not visible to anyone yet. A job dispatched then reached a worker that could
        # not see it, found nothing to claim, and acknowledged the message (issue 14's
        # stalled fan-out): only the outermost commit fires.
        return
    for signal in _signals:
        signal._fire(session)


@event.listens_for(Session, "after_rollback")
def _drop_notes(session: Session) -> None:
    if session.in_nested_transaction():
        # a SAVEPOINT rolled back; the transaction goes on and keeps its notes (a note is
        # a wake-up whose receiver reads the database, so one for work the savepoint
        # undid is harmless; dropping the others would lose them)
        return
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
