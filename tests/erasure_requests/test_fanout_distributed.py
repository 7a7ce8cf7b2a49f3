"""Subject fan-out on PostgreSQL with real Celery workers over Redis: two workers erase the
subject from three models at once, and the parent completes exactly when the last child
does (its row is locked while the children are read, so two publishes finishing together
cannot both see the other still running). Fails, not skips, under CI=true without
PostgreSQL or Redis (tests/conftest.py)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tests.support.requests import demo_subject, subject_body, wait_for_status
from tests.support.service import create_key

MODELS = ["digits-cnn", "digits-cnn-b", "digits-cnn-c"]
NO_GATE = {"policy_max_ta_drop": 100.0}  # about delivery, not unlearning quality


def test_fanout_on_postgres_and_celery_completes_the_parent_once(distributed: Any) -> None:
    from app.audit import service as audit
    from app.audit.models import AuditEvent
    from app.core.db import session_scope

    distributed.configure(**NO_GATE)
    for name in MODELS[1:]:
        distributed.add_model(name)
    distributed.worker("w1", beat=True)
    distributed.worker("w2")
    rt = distributed.runtime
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    subject, samples = demo_subject()
    with distributed.client() as client:
        body = subject_body(subject)
        resp = client.post("/v1/erasure-requests", json=body, headers=headers)
        assert resp.status_code == 202, resp.text
        parent = resp.json()
        assert parent["models"] == MODELS
        again = client.post("/v1/erasure-requests", json=body, headers=headers)
        assert again.status_code == 200 and again.json()["id"] == parent["id"]
        done = wait_for_status(client, parent["id"], headers, timeout=300)
        assert [(c["model"], c["status"], c["result_version"]) for c in done["children"]] == [
            (m, "completed", 2) for m in MODELS
        ]
        for name in MODELS:
            version = client.get(f"/v1/models/{name}/versions/2", headers=headers).json()
            assert set(samples) <= set(version["erased_sample_ids"])
    with session_scope(rt.session_factory, None) as s:
        audit.seal(session=s)
        finals = list(
            s.scalars(
                select(AuditEvent.type).where(
                    AuditEvent.subject == f"request:{parent['id']}",
                    AuditEvent.type.like("request.%"),
                )
            )
        )
        assert finals == ["request.received", "request.completed"]
        assert audit.verify(session=s).ok


BURST = ["digits-cnn", *(f"digits-cnn-{i}" for i in range(1, 8))]


def test_fanout_bursts_all_run_on_one_worker_without_beat(distributed: Any) -> None:
    """Without beat (nothing re-dispatches a lost job) every job of a burst runs: the
    scheduler creates the models' jobs in one transaction and hands them to Celery only
    after it commits. Before, a job was sent when the next one's SAVEPOINT was released;
    an idle worker took the message at once, saw no queued job, acknowledged it, and the
    job stayed `queued` (issue 14). Two fan-outs: the second reaches a warm, idle worker."""
    distributed.configure(**NO_GATE)
    for name in BURST[1:]:
        distributed.add_model(name)
    distributed.worker("solo")  # no --beat: no housekeeping, no reaper
    headers = {"X-API-Key": create_key(distributed.runtime, ["admin"])}
    with distributed.client() as client:
        for index, version in ((0, 2), (1, 3)):
            subject, _ = demo_subject(index)
            resp = client.post("/v1/erasure-requests", json=subject_body(subject), headers=headers)
            assert resp.status_code == 202, resp.text
            assert resp.json()["models"] == BURST
            done = wait_for_status(client, resp.json()["id"], headers, timeout=300)
            assert [(c["model"], c["result_version"]) for c in done["children"]] == [
                (m, version) for m in BURST
            ]
