"""Row factories: database rows a test needs as a precondition, built with defaults so the
test names only what it is about.

`request_row` and `job_row` build unsaved ORM rows (for pure functions such as the console
timeline); `add_job`, `add_model` and `update_request` write through a runtime's session
factory (one committed transaction each), as a worker or an operator would have.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update

T0 = datetime(2026, 12, 1, 9, 0)
"""The default receipt time of built rows: fixed, so timelines are reproducible."""


def request_row(status: Any, **values: Any) -> Any:
    """An unsaved `ErasureRequest` in `status`, received at `T0`, of 3 samples."""
    from app.erasure_requests.models import ErasureRequest

    defaults: dict[str, Any] = {
        "id": "r1",
        "status": status,
        "received_at": T0,
        "sample_count": 3,
        "regulation": "gdpr",
        "status_reason": None,
    }
    return ErasureRequest(**{**defaults, **values})


def job_row(**values: Any) -> Any:
    """An unsaved running `Job`, created 1 s and started 2 s after `T0`, second attempt."""
    from app.jobs.models import Job, JobStatus

    defaults: dict[str, Any] = {
        "id": "j1",
        "status": JobStatus.running,
        "created_at": T0 + timedelta(seconds=1),
        "started_at": T0 + timedelta(seconds=2),
        "attempts": 2,
        "worker": "gpu-1",
    }
    return Job(**{**defaults, **values})


def add_job(rt: Any, status: Any, model: str = "digits-cnn", max_attempts: int = 1) -> str:
    """Insert a job of `model` in `status` (the database's one-active-job rule applies);
    its id."""
    from app.core.db import session_scope
    from app.jobs.models import Job
    from app.registry.models import Model

    job_id = str(uuid.uuid4())
    with session_scope(rt.session_factory, None) as s:
        model_id = s.scalar(select(Model.id).where(Model.name == model))
        assert model_id is not None, f"no model {model!r}"
        s.add(Job(id=job_id, model_id=model_id, status=status, max_attempts=max_attempts))
    return job_id


def add_model(rt: Any, name: str, **values: Any) -> None:
    """Insert a bare model record (no versions, no samples): a `digits-cnn` of 10 classes
    unless `values` say otherwise."""
    from app.core.db import session_scope
    from app.registry.models import Model

    defaults: dict[str, Any] = {
        "architecture": "digits-cnn",
        "num_classes": 10,
        "dataset_id": "npz",
        "dataset_params": {},
    }
    with session_scope(rt.session_factory, None) as s:
        s.add(Model(name=name, **{**defaults, **values}))


def update_request(rt: Any, request_id: str, **values: Any) -> None:
    """Set columns of a stored request directly, as if it had got there (a status a worker
    would set, a receipt time in the past)."""
    from app.core.db import session_scope
    from app.erasure_requests.models import ErasureRequest

    with session_scope(rt.session_factory, None) as s:
        s.execute(update(ErasureRequest).where(ErasureRequest.id == request_id).values(**values))


def backdate(rt: Any, request_id: str, when: datetime) -> None:
    """Backdate a request's receipt, and with it its one-month deadline, to `when`."""
    from app.core.deadlines import add_months

    update_request(rt, request_id, received_at=when, due_at=add_months(when, 1))


def stored_job(rt: Any, job_id: str) -> Any:
    """The job row as stored now (detached)."""
    from app.core.db import session_scope
    from app.jobs.models import Job

    with session_scope(rt.session_factory, None) as s:
        return s.get(Job, job_id)
