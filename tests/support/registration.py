"""Registering models through the API in tests. Every registration is a job (202, the
model `validating`), so a test that needs the model posts it and then waits until it is
`ready`: with the embedded worker by polling, with a recording dispatcher (a client with
`dispatched`) by running the model's queued jobs here, as a worker would."""

from __future__ import annotations

import time
from typing import Any


def run_jobs(rt: Any, model: str) -> list[str]:
    """Run the model's queued jobs, oldest first, as a worker would; what each did."""
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.jobs.models import Job, JobStatus
    from app.registry.models import Model
    from workers.jobs import run

    done = []
    while True:
        with session_scope(rt.session_factory, None) as s:
            job_id = s.scalar(
                select(Job.id)
                .join(Model, Model.id == Job.model_id)
                .where(Model.name == model, Job.status == JobStatus.queued)
                .order_by(Job.created_at)
            )
        if job_id is None:
            return done
        done.append(run(job_id, rt))


def wait_for_model(
    client: Any, name: str, headers: dict[str, str], timeout: float = 240
) -> dict[str, Any]:
    """The model once it is no longer `validating` (ready or rejected)."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        resp = client.get(f"/v1/models/{name}", headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] != "validating":
            return body
        time.sleep(0.25)
    raise AssertionError(f"model {name} still validating after {timeout}s: {body}")


def until_ready(
    client: Any, name: str, headers: dict[str, str], rt: Any = None, timeout: float = 240
) -> dict[str, Any]:
    """The model once its registration published version 1; fails with the reason if it
    was rejected. A client whose jobs are recorded needs the runtime `rt` to run the
    registration job (only that one: erasure jobs that waited stay queued)."""
    if hasattr(client, "dispatched"):
        from workers.jobs import run

        assert rt is not None, "a recording dispatcher runs nothing: pass the runtime"
        resp = client.get(f"/v1/models/{name}", headers=headers)
        assert resp.status_code == 200, resp.text
        registration = resp.json()["registration"]
        assert registration is not None, f"model {name} has no registration job"
        if registration["status"] == "queued":
            run(registration["job_id"], rt)
    model = wait_for_model(client, name, headers, timeout)
    assert model["status"] == "ready", f"model {name} {model['status']}: {model['status_reason']}"
    assert model["latest_version"] >= 1
    return model


def register_ready(
    client: Any,
    headers: dict[str, str],
    files: dict[str, Any],
    rt: Any = None,
    **form: Any,
) -> dict[str, Any]:
    """POST /v1/models (202, `validating`) and the model once it is `ready`."""
    data = {k: str(v) for k, v in form.items()}
    resp = client.post("/v1/models", data=data, files=files, headers=headers)
    assert resp.status_code == 202, resp.text
    assert resp.json()["status"] == "validating", resp.text
    return until_ready(client, data["name"], headers, rt)
