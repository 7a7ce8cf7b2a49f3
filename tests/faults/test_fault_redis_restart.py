"""Redis (the Celery broker) is killed while a job runs and comes back empty: the queue,
the unacknowledged running message and any message sent meanwhile are gone. The
database is the source of truth, so the worker keeps running, the beat-driven reaper
re-dispatches the queued job whose message was lost, and every request completes once."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.faults.fault_checks import NO_GATE, RedisServer, assert_recovered, wait_final
from tests.support.requests import submit, training_ids
from tests.support.service import create_key
from tests.support.services import wait_until


def test_redis_restarted_mid_job_loses_messages_but_no_request(
    distributed: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    broker = RedisServer(tmp_path / "redis.log")
    try:
        distributed.configure(broker_url=broker.url, **NO_GATE)
        distributed.add_model("digits-b")
        rt = distributed.runtime
        worker = distributed.worker("w1", beat=True)
        headers = {"X-API-Key": create_key(rt, ["admin"])}
        ids = training_ids(rt, limit=4)
        with distributed.client() as client:

            def post(model: str) -> str:
                accepted = submit(client, ids, headers, model=model)
                return str(accepted["id"])

            first = post("digits-cnn")

            def running() -> str | None:
                body = client.get(f"/v1/erasure-requests/{first}", headers=headers).json()
                return body["job_id"] if body["status"] == "running" else None

            job_id = wait_until(running, timeout=60, what="the first job to run")
            broker.kill()
            job = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
            assert job["status"] == "running", job  # the broker died mid-job
            # Accepted while the broker is down: the job is committed (by the API's scheduler,
            # just after the request), its message is not.
            started = time.monotonic()
            second = post("digits-b")
            accept_s = time.monotonic() - started
            wait_until(
                lambda: [r for r in caplog.records if r.name == "lethe.dispatch"],
                timeout=60,
                what="the second job's dispatch to fail",
            )
            broker.start()  # same port, empty
            states = wait_final(rt, [first, second], timeout=90)
        assert worker.proc.poll() is None, "the worker died with its broker"
        assert states == {first: "completed", second: "completed"}, states
        assert accept_s < 10, f"accepting a request with the broker down took {accept_s:.1f}s"
        versions = assert_recovered(rt, [first, second])
        assert sorted((v.model_id, v.number) for v in versions) == [(1, 1), (1, 2), (2, 1), (2, 2)]
    finally:
        broker.kill()
