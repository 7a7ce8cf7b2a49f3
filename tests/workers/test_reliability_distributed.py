"""Exactly-once erasure on Celery over Redis with real worker processes and PostgreSQL:
concurrency, a worker killed mid-job, a job that keeps failing, per-model serialization."""

from __future__ import annotations

import itertools
import os
import signal
from typing import Any

from sqlalchemy import select

from tests.support.requests import erasure_body, training_ids, wait_for_status
from tests.support.rows import stored_job
from tests.support.service import create_key
from tests.support.services import wait_until
from tests.workers.reliability_checks import assert_single_chain, submit_concurrently

NO_GATE = {"policy_max_ta_drop": 100.0}  # these tests are about delivery, not quality


def _audit_types(rt: Any) -> list[tuple[str, str | None, dict]]:
    from app.audit.models import AuditEvent
    from app.audit.service import seal
    from app.core.db import session_scope

    with session_scope(rt.session_factory, None) as s:
        seal(session=s)
        return [
            (e.type, e.subject, e.data)
            for e in s.scalars(select(AuditEvent).order_by(AuditEvent.seq))
        ]


def test_fifty_concurrent_requests_form_one_chain(distributed: Any) -> None:
    distributed.configure(**NO_GATE)
    distributed.worker("w1", beat=True)
    rt = distributed.runtime
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    pool = training_ids(rt)
    with distributed.client() as client:
        requested = submit_concurrently(
            lambda body: client.post("/v1/erasure-requests", json=body, headers=headers), pool, 50
        )
        for rid in requested:
            wait_for_status(client, rid, headers, timeout=240)
    versions = assert_single_chain(rt, "digits-cnn", requested)
    assert 2 <= len(versions) <= 51
    from app.audit import service as audit
    from app.core.db import session_scope

    with session_scope(rt.session_factory, None) as s:
        assert audit.verify(session=s).ok


def test_worker_killed_mid_job_is_reaped_and_completes_once(distributed: Any) -> None:
    distributed.configure(unlearning_method="retrain", **NO_GATE)  # slow enough to kill
    rt = distributed.runtime
    victim = distributed.worker("victim")
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    with distributed.client() as client:
        resp = client.post(
            "/v1/erasure-requests", json=erasure_body(training_ids(rt, limit=5)), headers=headers
        )
        request_id = resp.json()["id"]

        def running_job() -> str | None:
            body = client.get(f"/v1/erasure-requests/{request_id}", headers=headers).json()
            if body["status"] != "running":
                return None
            job = client.get(f"/v1/jobs/{body['job_id']}", headers=headers).json()
            return body["job_id"] if job["phase"] == "unlearning" else None

        job_id = wait_until(running_job, timeout=60, what="the job to be unlearning")
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait(timeout=10)
        refused = client.delete(f"/v1/erasure-requests/{request_id}", headers=headers)
        assert refused.status_code == 409 and "already being erased" in refused.json()["detail"]

        distributed.worker("rescuer", beat=True)
        done = wait_for_status(client, request_id, headers, timeout=180)
    assert done["result_version"] == 2
    job = stored_job(rt, job_id)
    assert job.status.value == "succeeded" and job.attempts == 2
    versions = client.get("/v1/models/digits-cnn/versions", headers=headers).json()["items"]
    assert [v["number"] for v in versions] == [1, 2]
    lost = [
        d
        for t, subj, d in _audit_types(rt)
        if t == "job.attempt_failed" and subj == f"job:{job_id}"
    ]
    assert len(lost) == 1 and "lost" in lost[0]["reason"] and lost[0]["attempt"] == 1


def test_a_job_that_keeps_failing_ends_failed_and_publishes_nothing(distributed: Any) -> None:
    distributed.configure(job_max_attempts=2, request_max_attempts=2, **NO_GATE)
    rt = distributed.runtime
    from app.core.db import session_scope
    from app.registry.models import ModelVersion

    with session_scope(rt.session_factory, None) as s:
        sha = s.scalar(select(ModelVersion.checkpoint_sha256).where(ModelVersion.number == 1))
    manifest = rt.store.get_manifest(sha)
    digest = manifest.tensors[0].digest
    blob = rt.settings.data_dir / "store" / "blobs" / "sha256" / digest[:2] / digest
    blob.write_bytes(b"\x00" * blob.stat().st_size)  # the base checkpoint is now unreadable

    distributed.worker("w1", beat=True)
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    with distributed.client() as client:
        resp = client.post(
            "/v1/erasure-requests", json=erasure_body(training_ids(rt, limit=4)), headers=headers
        )
        request_id = resp.json()["id"]

        def final() -> dict | None:
            body = client.get(f"/v1/erasure-requests/{request_id}", headers=headers).json()
            return body if body["status"] == "failed" else None

        body = wait_until(final, timeout=120, what="the request to fail")
        versions = client.get("/v1/models/digits-cnn/versions", headers=headers).json()
    assert "CorruptBlob" in body["status_reason"] and "2 job(s)" in body["status_reason"]
    assert [v["number"] for v in versions["items"]] == [1]
    events = _audit_types(rt)
    failed_jobs = [d for t, _, d in events if t == "job.failed"]
    assert len(failed_jobs) == 2 and all(d["attempts"] == 2 for d in failed_jobs)
    assert [t for t, subj, _ in events if subj == f"request:{request_id}"] == [
        "request.received",
        "request.failed",
    ]


def test_two_workers_three_models_keep_each_model_serial(distributed: Any) -> None:
    distributed.configure(**NO_GATE)
    rt = distributed.runtime
    models = ["digits-cnn", "digits-b", "digits-c"]
    for name in models[1:]:
        distributed.add_model(name)
    distributed.worker("w1", beat=True)
    distributed.worker("w2")
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    pool = training_ids(rt)
    requested: dict[str, dict[str, set[str]]] = {}
    with distributed.client() as client:

        def post(body: dict) -> Any:
            return client.post("/v1/erasure-requests", json=body, headers=headers)

        for name in models:
            requested[name] = submit_concurrently(post, pool, 6, threads=3, model=name)
        for per_model in requested.values():
            for rid in per_model:
                wait_for_status(client, rid, headers, timeout=240)

    from app.core.db import session_scope
    from app.jobs.models import Job
    from app.registry.models import Model

    workers_used = set()
    with session_scope(rt.session_factory, None) as s:
        for name in models:
            assert_single_chain(rt, name, requested[name])
            model_id = s.scalar(select(Model.id).where(Model.name == name))
            jobs = list(
                s.scalars(
                    select(Job)
                    .where(Job.model_id == model_id, Job.status == "succeeded")
                    .order_by(Job.started_at)
                )
            )
            for earlier, later in itertools.pairwise(jobs):
                assert later.started_at >= earlier.finished_at, "two jobs of one model overlapped"
            workers_used.update(j.worker for j in jobs)
    assert len(workers_used) == 2, f"expected both workers to take jobs: {workers_used}"
