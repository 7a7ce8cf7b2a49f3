"""The whole flow on the embedded default, on SQLite and PostgreSQL: a request for
training samples ends `completed`, the new version names them, its checkpoint is the one
recorded, and the model really forgot while keeping its test accuracy."""

from __future__ import annotations

from typing import Any

from tests.support.checkpoints import accuracy_and_confidence, load_model, sha256
from tests.support.requests import download, erasure_body, submit, training_ids, wait_for_status


def test_class_erasure_completes_and_the_model_forgets(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    forget = training_ids(seeded, label=3)
    resp = embedded_client.post(
        "/v1/erasure-requests", json=erasure_body(forget), headers=admin_headers
    )
    assert resp.status_code == 202, resp.text
    request_id = resp.json()["id"]
    assert resp.headers["Location"] == f"/v1/erasure-requests/{request_id}"

    done = wait_for_status(embedded_client, request_id, admin_headers)
    assert done["result_version"] == 2

    job = embedded_client.get(f"/v1/jobs/{done['job_id']}", headers=admin_headers).json()
    assert job["status"] == "succeeded" and job["progress"] == 100.0
    assert job["request_ids"] == [request_id]

    manifest = embedded_client.get("/v1/models/digits-cnn/versions/2", headers=admin_headers)
    manifest = manifest.json()
    assert manifest["parent_number"] == 1
    assert manifest["request_ids"] == [request_id]
    assert manifest["erased_sample_ids"] == sorted(forget)
    assert manifest["method"] == "lau"

    blob, headers = download(
        embedded_client, "/v1/models/digits-cnn/versions/2/checkpoint", admin_headers
    )
    assert sha256(blob) == headers["X-Checkpoint-Sha256"] == manifest["checkpoint_sha256"]
    assert headers["ETag"] == f'"{manifest["checkpoint_sha256"]}"'

    v1_blob, _ = download(
        embedded_client, "/v1/models/digits-cnn/versions/1/checkpoint", admin_headers
    )
    v1, v2 = load_model(v1_blob), load_model(blob)
    forget_acc_v1, _ = accuracy_and_confidence(v1, forget)
    forget_acc_v2, _ = accuracy_and_confidence(v2, forget)
    # the erased class is gone by design; on every other class test accuracy must hold
    test_acc_v1, _ = accuracy_and_confidence(v1, None, test_without_label=3)
    test_acc_v2, _ = accuracy_and_confidence(v2, None, test_without_label=3)
    assert forget_acc_v1 > 95
    assert forget_acc_v2 < 5, "the erased class is still recognised"
    assert abs(test_acc_v2 - test_acc_v1) <= 2.0


def test_sample_erasure_completes_and_confidence_drops(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    forget = training_ids(seeded)[::50][:20]
    accepted = submit(embedded_client, forget, admin_headers)
    done = wait_for_status(embedded_client, accepted["id"], admin_headers)
    version = embedded_client.get(
        f"/v1/models/digits-cnn/versions/{done['result_version']}", headers=admin_headers
    ).json()
    assert version["erased_sample_ids"] == sorted(forget)
    assert version["method"] == "lau-calibrated"

    v1_blob, _ = download(
        embedded_client, "/v1/models/digits-cnn/versions/1/checkpoint", admin_headers
    )
    v2_blob, headers = download(
        embedded_client,
        f"/v1/models/digits-cnn/versions/{done['result_version']}/checkpoint",
        admin_headers,
    )
    assert sha256(v2_blob) == version["checkpoint_sha256"] == headers["X-Checkpoint-Sha256"]
    v1, v2 = load_model(v1_blob), load_model(v2_blob)
    _, conf_v1 = accuracy_and_confidence(v1, forget)
    _, conf_v2 = accuracy_and_confidence(v2, forget)
    test_v1, _ = accuracy_and_confidence(v1, None)
    test_v2, _ = accuracy_and_confidence(v2, None)
    assert conf_v2 < conf_v1, "the forgotten samples are held as confidently as before"
    assert abs(test_v2 - test_v1) <= 2.0
    # only the head changed, so the store kept only the head's bytes for version 2
    assert version["stored_bytes"] < version["checkpoint_size"] / 2
