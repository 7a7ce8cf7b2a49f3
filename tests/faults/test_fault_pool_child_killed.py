"""Only the Celery pool process running a job is SIGKILLed (the OOM killer's usual
victim); the worker's main process lives on. With acks_late and reject_on_worker_lost the
message goes straight back to the queue and a fresh pool process receives it while the
job still looks running: that redelivery must claim nothing and publish nothing (or, when
the heartbeat reaper requeued the job first, it runs the second attempt). Either way the
job publishes exactly one version.

(Killing the whole worker is covered in tests/workers/test_reliability_distributed.py.)"""

from __future__ import annotations

import os
import signal
from typing import Any

from tests.faults.fault_checks import NO_GATE, assert_recovered, audit_events, jobs
from tests.support.requests import erasure_body, training_ids, wait_for_status
from tests.support.service import create_key
from tests.support.services import wait_until


def job_row(rt: Any, job_id: str) -> Any:
    from app.core.db import session_scope
    from app.jobs.models import Job

    with session_scope(rt.session_factory, None) as s:
        return s.get(Job, job_id)


def test_pool_child_killed_mid_job_redelivery_publishes_once(distributed: Any) -> None:
    distributed.configure(**NO_GATE)
    rt = distributed.runtime
    worker = distributed.worker("w1", beat=True)
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    with distributed.client() as client:
        resp = client.post(
            "/v1/erasure-requests", json=erasure_body(training_ids(rt, limit=5)), headers=headers
        )
        request_id = resp.json()["id"]

        def running() -> Any:
            body = client.get(f"/v1/erasure-requests/{request_id}", headers=headers).json()
            return job_row(rt, body["job_id"]) if body["status"] == "running" else None

        job = wait_until(running, timeout=60, what="the job to run")
        # The job records the process that claimed it: "<host>:<pid>" of the pool child.
        child = int(job.worker.rsplit(":", 1)[1])
        assert child in worker.child_pids() and child != worker.proc.pid
        os.kill(child, signal.SIGKILL)
        after = job_row(rt, job.id)
        assert (after.status.value, after.attempts) == ("running", 1)  # killed mid-job

        done = wait_for_status(client, request_id, headers, timeout=90)
    assert worker.proc.poll() is None, "the worker's main process should survive"
    assert done["result_version"] == 2

    log = worker.log_path.read_text()
    assert "WorkerLostError" in log, log[-3000:]
    # The redelivered message reached a new pool process and either found the job taken
    # (it still looked running) or, when the reaper had requeued it first (its heartbeat
    # stopped with the process), claimed it as the second attempt; never a third.
    assert log.count("'not-claimed'") >= 1 or "claimed (attempt 2" in log, log[-3000:]
    assert "claimed (attempt 3" not in log
    assert log.count("'published'") == 1

    [(job_id, status, attempts, _)] = jobs(rt)
    assert (job_id, status, attempts) == (job.id, "succeeded", 2)
    failed = [d for _, subj, d in audit_events(rt, "job.attempt_failed")]
    assert len(failed) == 1 and failed[0]["attempt"] == 1 and "lost" in failed[0]["reason"]
    versions = assert_recovered(rt, [request_id])
    assert [v.number for v in versions] == [1, 2]
