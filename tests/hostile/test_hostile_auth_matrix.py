"""The authorization matrix, completed: every route × {no key, revoked key, wrong scope,
wrong model, right scope}.

`tests/auth/test_auth_matrix.py` walks every route for the refusals (401 without, with an
unknown, malformed or revoked key; 403 with the wrong scope or a key limited to another
model). This module adds the leg that proves those refusals are not a blanket "no": a key
holding exactly the route's scope, limited to the model the route acts on, gets through
(neither 401 nor 403, no 5xx) on every route, with real ids filled in; reads and the
writes given a complete body succeed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.openapi import scope_of
from tests.auth.test_auth_matrix import BODIES, PUBLIC, _fill, _operations
from tests.support.requests import dispatched_job, erasure_body, recording_app, submit, training_ids
from tests.support.service import create_key

HOOK = {"url": "http://127.0.0.1:9/hook", "events": ["version.published"]}


@pytest.fixture
def client(seeded: Any) -> Iterator[TestClient]:
    """The API with a recording dispatcher; loopback allow-listed so a webhook can exist."""
    settings = seeded.settings.model_copy(update={"callback_allowed_hosts": "127.0.0.1"})
    app, recorder = recording_app(seeded, settings)
    with TestClient(app) as c:
        c.dispatched = recorder.sent  # type: ignore[attr-defined]
        yield c


def test_the_right_scope_on_the_right_model_gets_through_on_every_route(
    client: Any, seeded: Any
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    created = submit(client, training_ids(seeded, limit=2), admin)
    hook = client.post("/v1/models/digits-cnn/webhooks", json=HOOK, headers=admin)
    assert hook.status_code == 201, hook.text
    signed = client.get("/v1/audit/checkpoint", headers=admin).json()  # one to read back
    values = {
        "size": str(signed["size"]),
        "name": "digits-cnn",
        "request_id": created["id"],
        "job_id": dispatched_job(client),
        "subject_request_id": created["subject_request_id"],
        "webhook_id": hook.json()["id"],
        "number": "1",
        "alias": "production",
        "seq": "1",
    }
    # a receipt exists once a request is final: one for a subject no model holds is at once
    unheld = erasure_body([])
    del unheld["sample_ids"]
    unheld["subject_identities"] = [{"identity_type": "user_id", "identity_value": "nobody"}]
    final = client.post("/v1/erasure-requests", json=unheld, headers=admin).json()
    assert final["status"] == "completed", final
    ids_for = {"/v1/erasure-requests/{request_id}/receipt": {**values, "request_id": final["id"]}}
    queries = {"/v1/callbacks/deliveries": {"request_id": created["id"]}}
    bodies = {
        **BODIES,
        ("POST", "/v1/erasure-requests"): erasure_body(training_ids(seeded, limit=3)),
        ("POST", "/v1/models/{name}/webhooks"): HOOK,
    }
    # state-changing routes last, so the reads see the request and webhook as created
    order = {"GET": 0, "PUT": 1, "POST": 2, "DELETE": 3}
    operations = sorted(_operations(client.app), key=lambda op: order.get(op[0], 9))

    failures, checked = [], 0
    for method, path, route in operations:
        scope = scope_of(route)
        if scope is None:
            assert (method, path) in PUBLIC, f"{method} {path} has no scope and is not public"
            continue
        key = create_key(seeded, [scope], models=None if scope == "admin" else ["digits-cnn"])
        resp = client.request(
            method,
            _fill(path, ids_for.get(path, values)),
            headers={"X-API-Key": key},
            params=queries.get(path),
            json=bodies.get((method, path)),
        )
        where = f"{method} {path} with exactly `{scope}` on digits-cnn"
        if resp.status_code in (401, 403) or resp.status_code >= 500:
            failures.append(f"{where}: {resp.status_code} {resp.text[:300]}")
        elif (method == "GET" or (method, path) in bodies) and not 200 <= resp.status_code < 300:
            failures.append(f"{where}: answered {resp.status_code} {resp.text[:300]}")
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked >= 15
