"""Distributed mode: PostgreSQL, Redis and real Celery worker processes."""

from __future__ import annotations

from typing import Any

from tests.support.checkpoints import sha256
from tests.support.requests import download, submit, training_ids, wait_for_status
from tests.support.service import create_key


def test_request_completes_through_a_celery_worker(distributed: Any) -> None:
    distributed.worker("w1", beat=True)
    headers = {"X-API-Key": create_key(distributed.runtime, ["admin"])}
    forget = training_ids(distributed.runtime, label=5)
    with distributed.client() as client:
        accepted = submit(client, forget, headers)
        done = wait_for_status(client, accepted["id"], headers, timeout=120)
        assert done["result_version"] == 2
        version = client.get("/v1/models/digits-cnn/versions/2", headers=headers).json()
        assert version["erased_sample_ids"] == sorted(forget)
        blob, hdrs = download(client, "/v1/models/digits-cnn/versions/2/checkpoint", headers)
        assert sha256(blob) == version["checkpoint_sha256"] == hdrs["X-Checkpoint-Sha256"]
        ready = client.get("/readyz").json()
        assert ready["checks"] == {"database": "ok", "store": "ok", "broker": "ok"}
