"""A fan-out's burst of jobs reaches the workers only once each job is committed (issue 14's
stalled fan-out): the scheduler creates the jobs of many models in one transaction, each
behind a SAVEPOINT, and SQLAlchemy fires `after_commit` when a SAVEPOINT is released. A
job handed to a worker before the commit could not be claimed (the worker sees no queued
job, acknowledges the message and drops it), and without Celery beat nothing sent it
again: the job stayed `queued` for ever."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.support.requests import add_demo_models, demo_subject, subject_body
from tests.support.services import wait_until

MODELS = ["digits-cnn", *(f"digits-cnn-{i}" for i in range(1, 6))]


class VisibilityDispatcher:
    """Records, for each job id it is handed, what another connection sees of that job at
    that moment: what a worker on another machine would find when it tries to claim it."""

    def __init__(self, rt: Any) -> None:
        self.rt = rt
        self.seen: dict[str, str | None] = {}

    def dispatch(self, job_id: str) -> None:
        from app.core.db import session_scope
        from app.jobs.models import Job

        with session_scope(self.rt.session_factory, None) as s:
            status = s.scalar(select(Job.status).where(Job.id == job_id))
        self.seen[job_id] = status.value if status is not None else None

    def deliver_callbacks(self) -> None:
        pass

    def ping(self) -> bool:
        return False


def test_every_job_of_a_fanout_burst_is_committed_when_it_is_dispatched(
    seeded: Any, admin_headers: dict[str, str], demo_artifacts: Any
) -> None:
    from app.core.db import session_scope
    from app.jobs.models import Job
    from app.main import create_app

    add_demo_models(seeded, MODELS[1:], demo_artifacts)
    dispatcher = VisibilityDispatcher(seeded)
    app = create_app(
        seeded.settings,
        dispatcher=dispatcher,
        session_factory=seeded.session_factory,
        store=seeded.store,
    )
    subject, _ = demo_subject()
    with TestClient(app) as client:
        resp = client.post(
            "/v1/erasure-requests", json=subject_body(subject), headers=admin_headers
        )
        assert resp.status_code == 202, resp.text
        assert resp.json()["models"] == MODELS
        wait_until(lambda: len(dispatcher.seen) == len(MODELS), timeout=30, what="6 dispatches")
    with session_scope(seeded.session_factory, None) as s:
        jobs = set(s.scalars(select(Job.id)))
    assert set(dispatcher.seen) == jobs
    # a worker handed any of these ids could claim it: none was still uncommitted
    assert dispatcher.seen == dict.fromkeys(jobs, "queued")
