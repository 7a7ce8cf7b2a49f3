"""Celery tasks: thin wrappers that take ids and call the pipeline.

torch (and CUDA) is imported inside the task, in the worker's child process, never in
the parent before fork.
"""

from __future__ import annotations

import functools

from app.core.config import get_settings
from workers.celery_app import (
    DELIVER_CALLBACKS,
    GPU_QUEUE,
    HOUSEKEEPING,
    PURGE,
    RUN_JOB,
    CeleryDispatcher,
    celery_app,
)
from workers.runtime import Runtime, build_runtime


@functools.lru_cache(maxsize=1)
def runtime() -> Runtime:
    return build_runtime(get_settings(), CeleryDispatcher(celery_app))


@celery_app.task(name=RUN_JOB)
def run_job(job_id: str) -> str:
    from workers.jobs import run

    return run(job_id, runtime())


@celery_app.task(name=DELIVER_CALLBACKS)
def deliver_callbacks() -> int:
    from app.callbacks.sender import deliver_due

    rt = runtime()
    return deliver_due(session_factory=rt.session_factory, settings=rt.settings)


@celery_app.task(name=HOUSEKEEPING)
def housekeeping() -> int:
    """The beat task: the same housekeeping as the embedded worker's tick."""
    from app.housekeeping import housekeeping as run
    from workers.purge import pending

    rt = runtime()
    done = run(session_factory=rt.session_factory, dispatcher=rt.dispatcher, settings=rt.settings)
    if pending(rt):  # a purge a crash interrupted after its publish: the job workers finish it
        celery_app.send_task(PURGE, queue=GPU_QUEUE)
    return done.redispatched


@celery_app.task(name=PURGE)
def purge() -> int:
    from workers.purge import purge_pending

    return purge_pending(runtime())
