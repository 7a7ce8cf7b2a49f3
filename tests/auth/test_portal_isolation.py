"""Two portals, each with a key limited to its own model: neither learns anything about
the other's resources (audit events included)."""

from __future__ import annotations

import json
from typing import Any

from tests.support.requests import erasure_body, training_ids
from tests.support.service import create_key


def test_a_portal_sees_only_its_models_audit_and_no_foreign_ids(
    api_client: Any, seeded: Any, demo_artifacts: Any
) -> None:
    from lethe.demo import seed_demo

    assert seed_demo(seeded, name="other-model", artifacts=demo_artifacts)
    scopes = ["erasure:write", "erasure:read", "audit:read"]
    a = {"X-API-Key": create_key(seeded, scopes, models=["digits-cnn"], name="portal-a")}
    b = {"X-API-Key": create_key(seeded, scopes, models=["other-model"], name="portal-b")}
    ids = training_ids(seeded, limit=2)
    mine = api_client.post("/v1/erasure-requests", json=erasure_body(ids[:1]), headers=a)
    assert mine.status_code == 202, mine.text
    theirs = api_client.post(
        "/v1/erasure-requests",
        json=erasure_body(training_ids(seeded, "other-model", limit=1), model="other-model"),
        headers=b,
    )
    assert theirs.status_code == 202, theirs.text

    seen_by_b = api_client.get("/v1/audit", params={"limit": 1000}, headers=b).json()["items"]
    text = json.dumps(seen_by_b)
    assert seen_by_b, "portal B sees its own events"
    assert mine.json()["id"] not in text and "portal-a" not in text
    for event in seen_by_b:
        subject = event["subject"]
        if subject.startswith("job:"):  # a job of B's own model
            assert api_client.get(f"/v1/jobs/{subject[4:]}", headers=b).status_code == 200
        else:
            assert subject in ("model:other-model", f"request:{theirs.json()['id']}"), event
    assert all(e["data"].get("model") in (None, "other-model") for e in seen_by_b)
    assert theirs.json()["id"] in text
    seen_by_a = json.dumps(api_client.get("/v1/audit", params={"limit": 1000}, headers=a).json())
    assert mine.json()["id"] in seen_by_a and theirs.json()["id"] not in seen_by_a
    # filtering by a foreign subject finds nothing either
    probe = api_client.get(
        "/v1/audit", params={"subject": f"request:{mine.json()['id']}"}, headers=b
    )
    assert probe.status_code == 200 and probe.json()["items"] == []

    # portal B reusing portal A's subject_request_id: refused, without A's request id
    reuse = {
        **erasure_body(training_ids(seeded, "other-model", limit=1), model="other-model"),
        "subject_request_id": mine.json()["subject_request_id"],
    }
    resp = api_client.post("/v1/erasure-requests", json=reuse, headers=b)
    assert resp.status_code == 409
    assert mine.json()["id"] not in resp.text and "existing_request_id" not in resp.json()
    # A itself, sending another body under its own subject_request_id, is told which one
    again = {**erasure_body(ids[1:]), "subject_request_id": mine.json()["subject_request_id"]}
    own = api_client.post("/v1/erasure-requests", json=again, headers=a)
    assert own.status_code == 409 and own.json()["existing_request_id"] == mine.json()["id"]
    # A's request and job do not exist for B
    assert api_client.get(f"/v1/erasure-requests/{mine.json()['id']}", headers=b).status_code == 404
