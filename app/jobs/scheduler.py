"""The scheduler of the API process: after a commit that stored requests, it makes sure
their model has a job (`service.schedule_model`) in a transaction of its own, once for
all the requests committed meanwhile, so submitting a request never waits on it. The
periodic tick (embedded worker, Celery beat) schedules every model anyway."""

from __future__ import annotations

from typing import Any

from app.core.background import BackgroundLoop
from app.core.config import Settings
from app.core.db import Dispatcher, session_scope
from app.jobs import service


def scheduler(session_factory: Any, dispatcher: Dispatcher, settings: Settings) -> BackgroundLoop:
    def schedule(model_ids: set[int]) -> None:
        if not model_ids:
            return
        with session_scope(session_factory, dispatcher) as s:
            for model_id in sorted(model_ids):
                service.schedule_model(
                    session=s, model_id=model_id, settings=settings, stragglers=False
                )

    return BackgroundLoop("lethe-scheduler", service.REQUESTS_STORED, schedule, settle_s=0.05)
