"""The Celery application, configured for long GPU jobs.

Celery only carries job ids; the database says what a job is. A job message is
acknowledged after the task returns (acks_late) and given back if the worker process
dies (reject_on_worker_lost); each worker takes one message at a time (prefetch 1); Redis
redelivers an unacknowledged message only after the visibility timeout, which the
settings keep longer than the hard time limit of any job. Stale jobs are caught sooner
by the heartbeat reaper of housekeeping (beat task `lethe.housekeeping`).
"""

from __future__ import annotations

from celery import Celery
from kombu import Queue

from app.core.config import Settings, get_settings

GPU_QUEUE = "gpu"
DEFAULT_QUEUE = "default"
RUN_JOB = "lethe.run_job"
HOUSEKEEPING = "lethe.housekeeping"
DELIVER_CALLBACKS = "lethe.deliver_callbacks"
PURGE = "lethe.purge"
"""Finish purges a crash interrupted (`workers.purge`): on the job workers, which hold the
data directory and the engine (the purge rewrites their feature-cache tables)."""


def make_celery(settings: Settings) -> Celery:
    app = Celery("lethe", broker=settings.broker_url, include=["workers.tasks"])
    transport = {"visibility_timeout": settings.visibility_timeout_s}
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options=transport,
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_soft_time_limit=settings.job_time_limit_s,
        task_time_limit=settings.job_hard_time_limit_s,
        task_queues=[Queue(GPU_QUEUE), Queue(DEFAULT_QUEUE)],
        task_default_queue=DEFAULT_QUEUE,
        task_routes={
            RUN_JOB: {"queue": GPU_QUEUE},
            PURGE: {"queue": GPU_QUEUE},
            HOUSEKEEPING: {"queue": DEFAULT_QUEUE},
            DELIVER_CALLBACKS: {"queue": DEFAULT_QUEUE},
        },
        beat_schedule={
            "housekeeping": {"task": HOUSEKEEPING, "schedule": settings.housekeeping_interval_s},
        },
        worker_hijack_root_logger=False,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


class CeleryDispatcher:
    """Sends job ids to the `gpu` queue (called after the creating transaction commits)."""

    def __init__(self, app: Celery):
        self.app = app

    def dispatch(self, job_id: str) -> None:
        self.app.send_task(RUN_JOB, args=[job_id], queue=GPU_QUEUE)

    def deliver_callbacks(self) -> None:
        """Wake a sender on the `default` queue (housekeeping also delivers what is due)."""
        self.app.send_task(DELIVER_CALLBACKS, queue=DEFAULT_QUEUE)

    def ping(self) -> bool:
        with self.app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True


celery_app = make_celery(get_settings())
