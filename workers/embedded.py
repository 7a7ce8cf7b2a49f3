"""The embedded worker: runs jobs in a thread of the API process with the very same
pipeline the Celery task runs, plus the housekeeping tick (`app.housekeeping` and
`workers.purge.purge_pending`, what Celery beat runs) and a callback sender woken after
commits that queued callbacks."""

from __future__ import annotations

import logging
import queue
import threading

from sqlalchemy import select

from app.callbacks.sender import deliver_due
from app.core.db import session_scope
from app.housekeeping import Housekeeping, housekeeping
from app.jobs.models import Job, JobStatus
from workers.jobs import run as run_job
from workers.purge import purge_pending
from workers.runtime import Runtime

log = logging.getLogger("lethe.embedded")


class EmbeddedWorker:
    """A Dispatcher that runs each job id on its own worker thread, one at a time."""

    def __init__(self, runtime: Runtime):
        runtime.dispatcher = self
        self.rt = runtime
        self._jobs: queue.Queue[str | None] = queue.Queue()
        self._stop = threading.Event()
        self._callbacks = threading.Event()
        self._threads: list[threading.Thread] = []

    def dispatch(self, job_id: str) -> None:
        self._jobs.put(job_id)

    def start(self) -> None:
        self._threads = [
            threading.Thread(target=self._work, name="lethe-embedded-worker", daemon=True),
            threading.Thread(
                target=self._tick_loop, name="lethe-embedded-housekeeping", daemon=True
            ),
            threading.Thread(
                target=self._deliver_loop, name="lethe-embedded-callbacks", daemon=True
            ),
        ]
        for t in self._threads:
            t.start()
        # Jobs queued before a restart are picked up again.
        with session_scope(self.rt.session_factory, self) as s:
            for job_id in s.scalars(select(Job.id).where(Job.status == JobStatus.queued)):
                self.dispatch(job_id)

    def stop(self, timeout: float = 30) -> None:
        self._stop.set()
        self._jobs.put(None)
        self._callbacks.set()
        for t in self._threads:
            t.join(timeout=timeout)

    def ping(self) -> bool:
        return False  # no broker: jobs run in this process

    def deliver_callbacks(self) -> None:
        """Wake the callback sender (called after a commit that queued callbacks)."""
        self._callbacks.set()

    def tick(self) -> Housekeeping:
        """One run of housekeeping (the beat task runs it in Celery)."""
        rt = self.rt
        done = housekeeping(
            session_factory=rt.session_factory, dispatcher=self, settings=rt.settings
        )
        purge_pending(rt)  # a purge a crash interrupted after its publish (workers.purge)
        return done

    def _work(self) -> None:
        while not self._stop.is_set():
            job_id = self._jobs.get()
            if job_id is None:
                return
            try:
                outcome = run_job(job_id, self.rt)
                log.info("job %s: %s", job_id, outcome)
            except Exception:
                log.exception("embedded worker: job %s crashed", job_id)

    def _deliver_loop(self) -> None:
        """Send due callbacks when woken (retries come due on the housekeeping tick)."""
        while not self._stop.is_set():
            self._callbacks.wait()
            self._callbacks.clear()
            if self._stop.is_set():
                return
            try:
                rt = self.rt
                while deliver_due(session_factory=rt.session_factory, settings=rt.settings):
                    pass
            except Exception:
                log.exception("embedded callback delivery failed")

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.rt.settings.housekeeping_interval_s):
            try:
                self.tick()
            except Exception:
                log.exception("embedded housekeeping tick failed")
