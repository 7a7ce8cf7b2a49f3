"""Erasure requests in tests: pick training samples, build and submit a body, wait for a
status; an API whose jobs are recorded instead of run."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import select


def training_ids(
    rt: Any, model: str = "digits-cnn", *, label: int | None = None, limit: int | None = None
) -> list[str]:
    from app.core.db import session_scope
    from app.registry.models import Model, TrainingSample

    with session_scope(rt.session_factory, None) as s:
        q = (
            select(TrainingSample.sample_id)
            .join(Model, Model.id == TrainingSample.model_id)
            .where(Model.name == model)
            .order_by(TrainingSample.sample_id)
        )
        if label is not None:
            q = q.where(TrainingSample.label == label)
        ids = list(s.scalars(q))
    return ids[:limit] if limit else ids


def erasure_body(sample_ids: list[str], model: str = "digits-cnn", **extra: Any) -> dict[str, Any]:
    return {
        "subject_request_id": str(uuid.uuid4()),
        "regulation": "gdpr",
        "submitted_time": "2026-11-26T10:00:00Z",
        "model": model,
        "sample_ids": sample_ids,
        **extra,
    }


def submit(
    client: Any, sample_ids: list[str], headers: dict[str, str], **extra: Any
) -> dict[str, Any]:
    """POST an erasure request for `sample_ids` (accepted: 202) and return its body."""
    resp = client.post(
        "/v1/erasure-requests", json=erasure_body(sample_ids, **extra), headers=headers
    )
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    return body


def wait_for_status(
    client: Any,
    request_id: str,
    headers: dict[str, str],
    statuses: tuple[str, ...] = ("completed",),
    timeout: float = 180,
) -> dict:
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        resp = client.get(f"/v1/erasure-requests/{request_id}", headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        if body["status"] in statuses:
            return body
        if body["status"] in ("failed", "denied", "canceled", "completed"):
            raise AssertionError(f"request ended {body['status']}: {body['status_reason']}")
        time.sleep(0.25)
    raise AssertionError(f"request still {body.get('status')} after {timeout}s")


class RecordingDispatcher:
    """A dispatcher that runs nothing: jobs are created, their ids listed in `sent`."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def dispatch(self, job_id: str) -> None:
        self.sent.append(job_id)

    def deliver_callbacks(self) -> None:
        pass  # nothing sends them here; a test calls the sender itself

    def ping(self) -> bool:
        return False


def recording_app(rt: Any, settings: Any = None) -> tuple[Any, RecordingDispatcher]:
    """The API of runtime `rt` (with `settings` instead of its own, if given) whose jobs
    go to a RecordingDispatcher."""
    from app.main import create_app

    recorder = RecordingDispatcher()
    app = create_app(
        settings or rt.settings,
        dispatcher=recorder,
        session_factory=rt.session_factory,
        store=rt.store,
    )
    return app, recorder


def dispatched_job(client: Any, timeout: float = 10) -> str:
    """The first job the API's scheduler dispatched (it runs just after the submit's commit)
    to a client whose recording dispatcher lists them in `client.dispatched`."""
    deadline = time.monotonic() + timeout
    while not client.dispatched:
        if time.monotonic() > deadline:
            raise AssertionError(f"no job dispatched after {timeout}s")
        time.sleep(0.02)
    return str(client.dispatched[0])


def download(client: Any, path: str, headers: dict[str, str]) -> tuple[bytes, Any]:
    resp = client.get(path, headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.content, resp.headers


def demo_subject(index: int = 0) -> tuple[str, list[str]]:
    """A data subject of the demo training set (its raw `user_id`) and their sample ids."""
    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    train = load_dataset(DEMO_DATASET, DEMO_PARAMS).train
    subject = sorted(set(train.subjects))[index]
    return subject, sorted(
        i for i, s in zip(train.ids, train.subjects, strict=True) if s == subject
    )


def subject_body(subject: str, model: str | None = None, **extra: Any) -> dict[str, Any]:
    """A request by subject identity; without `model` it fans out to every model."""
    body = erasure_body([], model=model or "", **extra)
    del body["sample_ids"]
    if model is None:
        del body["model"]
    body["subject_identities"] = [{"identity_type": "user_id", "identity_value": subject}]
    return body


def add_demo_models(rt: Any, names: list[str], artifacts: Any) -> None:
    """Register more models on the demo checkpoint and training set (cheap: the store
    already holds the checkpoint's blobs)."""
    from lethe.demo import seed_demo

    for name in names:
        seed_demo(rt, name=name, artifacts=artifacts)
