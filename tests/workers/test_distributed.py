"""Distributed mode: PostgreSQL, Redis and real Celery worker processes."""

from __future__ import annotations

from typing import Any

from tests.conftest import create_key
from tests.helpers import download, erasure_body, sha256, training_ids, wait_for_status


def test_request_completes_through_a_celery_worker(distributed: Any) -> None:
    distributed.worker("w1", beat=True)
    headers = {"X-API-Key": create_key(distributed.runtime, ["admin"])}
    forget = training_ids(distributed.runtime, label=5)
    with distributed.client() as client:
        resp = client.post("/v1/erasure-requests", json=erasure_body(forget), headers=headers)
        assert resp.status_code == 202, resp.text
        done = wait_for_status(client, resp.json()["id"], headers, timeout=120)
        assert done["result_version"] == 2
        version = client.get("/v1/models/digits-cnn/versions/2", headers=headers).json()
        assert version["erased_sample_ids"] == sorted(forget)
        blob, hdrs = download(client, "/v1/models/digits-cnn/versions/2/checkpoint", headers)
        assert sha256(blob) == version["checkpoint_sha256"] == hdrs["X-Checkpoint-Sha256"]
        ready = client.get("/readyz").json()
        assert ready["checks"] == {"database": "ok", "store": "ok", "broker": "ok"}
