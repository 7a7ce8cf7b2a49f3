"""The scheduler of the API process: after a commit that stored requests, it makes sure
their model has a job (`scheduling.schedule_model`) in a transaction of its own, once for
all the requests committed meanwhile, so submitting a request never waits on it. The
periodic tick (embedded worker, Celery beat) schedules every model anyway."""

from __future__ import annotations

from typing import Any

from app.core.after_commit import BackgroundLoop, Dispatcher
from app.core.config import Settings
from app.core.db import session_scope
from app.erasure_requests.storage import REQUESTS_STORED
from app.jobs import scheduling


def scheduler(session_factory: Any, dispatcher: Dispatcher, settings: Settings) -> BackgroundLoop:
    def schedule(model_ids: set[int]) -> None:
        if not model_ids:
            return
        with session_scope(session_factory, dispatcher) as s:
            for model_id in sorted(model_ids):
                scheduling.schedule_model(
                    session=s, model_id=model_id, settings=settings, stragglers=False
                )

    return BackgroundLoop("lethe-scheduler", REQUESTS_STORED, schedule, settle_s=0.05)
