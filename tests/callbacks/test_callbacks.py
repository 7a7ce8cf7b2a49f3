"""Signed status callbacks and model webhooks, delivered to a receiver on loopback by the
running service: Standard Webhooks HMAC, retries after a 500 with every attempt recorded
and audited, and internal targets refused before anything is stored."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.callbacks.callback_receiver import Received, Receiver
from tests.support.requests import erasure_body, submit, training_ids, wait_for_status
from tests.support.service import create_key
from tests.support.services import wait_until


def _verified(received: list[Received], secret: str) -> list[dict[str, Any]]:
    """Every POST verifies with `secret`; returns the payloads."""
    from app.callbacks import signing

    key = signing.parse_secret(secret)
    for r in received:
        assert r.headers["content-type"] == "application/json"
        assert signing.verify(
            key,
            r.headers["webhook-id"],
            r.headers["webhook-timestamp"],
            r.body,
            r.headers["webhook-signature"],
        ), "the webhook-signature does not verify"
        assert not signing.verify(
            key,
            r.headers["webhook-id"],
            r.headers["webhook-timestamp"],
            r.body + b" ",
            r.headers["webhook-signature"],
        )
    return [json.loads(r.body) for r in received]


def test_status_callbacks_are_signed_and_retried_after_a_500(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str], receiver: Receiver
) -> None:
    secret = embedded_client.get("/v1/callbacks/signing-secret", headers=admin_headers)
    assert secret.status_code == 200, secret.text
    body = erasure_body(training_ids(seeded, label=3), status_callback_urls=[receiver.url()])
    resp = embedded_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
    assert resp.status_code == 202, resp.text
    request_id = resp.json()["id"]
    wait_for_status(embedded_client, request_id, admin_headers)

    def all_delivered() -> list[dict[str, Any]] | None:
        items = embedded_client.get(
            "/v1/callbacks/deliveries", params={"request_id": request_id}, headers=admin_headers
        ).json()["items"]
        return items if items and all(d["status"] == "delivered" for d in items) else None

    deliveries = wait_until(all_delivered, timeout=30, what="every callback delivered")
    payloads = _verified(receiver.snapshot(), secret.json()["secret"])

    statuses = [d["data"]["status"] for d in payloads]
    # without a batching window a request is stored `queued`: its first callback says so
    assert statuses[0] == "queued"
    assert {"queued", "running", "completed"} <= set(statuses)
    assert all(p["type"] == "request.status_changed" for p in payloads)
    assert all(p["data"]["id"] == request_id for p in payloads)
    done = next(p["data"] for p in payloads if p["data"]["status"] == "completed")
    assert done["result_version"] == 2
    assert done["subject_request_id"] == body["subject_request_id"]

    # the first POST got a 500 and the same message (same webhook-id) came again
    received = receiver.snapshot()
    assert received[0].answered == 500
    first_id = received[0].headers["webhook-id"]
    assert [r.answered for r in received if r.headers["webhook-id"] == first_id] == [500, 204]
    retried = next(d for d in deliveries if d["id"] == first_id)
    assert retried["attempts"] == 2
    assert [a["status_code"] for a in retried["attempt_log"]] == [500, 204]
    assert retried["attempt_log"][0]["error"] == "HTTP 500"
    assert len(deliveries) == len({r.headers["webhook-id"] for r in received})

    # in order: numbered 1..n with millisecond timestamps, and no event reached the portal
    # before every earlier one was delivered (the first waited out its retry)
    sequences = [json.loads(r.body)["sequence"] for r in received]
    assert sorted(set(sequences)) == list(range(1, len(deliveries) + 1))
    assert sequences == sorted(sequences), sequences
    for i in range(len(received)):
        earlier = {s for s, e in zip(sequences[:i], received[:i], strict=True) if e.answered == 204}
        assert set(range(1, sequences[i])) <= earlier, (i, sequences)
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", p["timestamp"]) for p in payloads
    )
    # a retry is the same event: same id, same body
    assert received[0].body == received[1].body and sequences[:2] == [1, 1]

    audit = embedded_client.get(
        "/v1/audit",
        params={"subject": f"request:{request_id}", "limit": 1000},
        headers=admin_headers,
    ).json()["items"]
    types = [e["type"] for e in audit]
    assert types.count("callback.delivered") == len(deliveries)
    assert types.count("callback.attempt_failed") == 1
    assert "127.0.0.1" in json.dumps(
        [e["data"] for e in audit if e["type"] == "callback.delivered"]
    )
    assert embedded_client.get("/v1/audit/verify", headers=admin_headers).json()["ok"] is True


def _count(rt: Any, table: Any) -> int:
    from app.core.db import session_scope

    with session_scope(rt.session_factory, None) as s:
        return s.scalar(select(func.count()).select_from(table)) or 0


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/callbacks",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/callbacks",
        "http://[::1]:8080/callbacks",
        "http://[::ffff:10.0.0.1]/callbacks",
        "ftp://portal.example.com/callbacks",
    ],
)
def test_internal_callback_targets_are_refused_and_nothing_is_stored(
    seeded: Any, admin_headers: dict[str, str], url: str
) -> None:
    from fastapi.testclient import TestClient

    from app.callbacks.models import CallbackDelivery, ModelWebhook
    from app.erasure_requests.models import ErasureRequest
    from app.main import create_app

    settings = seeded.settings.model_copy(update={"callback_allowed_hosts": ""})
    app = create_app(settings, session_factory=seeded.session_factory, store=seeded.store)
    with TestClient(app) as client:
        body = erasure_body(training_ids(seeded, limit=2), status_callback_urls=[url])
        resp = client.post("/v1/erasure-requests", json=body, headers=admin_headers)
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        problem = resp.json()
        if url.startswith("ftp"):
            assert problem["type"].endswith("/validation-error")
        else:
            assert problem["type"].endswith("/callback-target-refused")
            assert problem["errors"][0]["pointer"] == "/status_callback_urls/0"
        hook = client.post(
            "/v1/models/digits-cnn/webhooks",
            json={"url": url, "events": ["version.published"]},
            headers=admin_headers,
        )
        assert hook.status_code == 422, hook.text
    assert _count(seeded, ErasureRequest) == 0
    assert _count(seeded, ModelWebhook) == 0
    assert _count(seeded, CallbackDelivery) == 0


def test_a_model_webhook_fires_when_a_version_is_published(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    receiver = Receiver()
    try:
        writer = {"Authorization": f"Bearer {create_key(seeded, ['models:write'], name='ml')}"}
        reader = {"Authorization": f"Bearer {create_key(seeded, ['models:read'], name='ro')}"}
        hook_body = {"url": receiver.url("/ml"), "events": ["version.published"]}
        denied = embedded_client.post(
            "/v1/models/digits-cnn/webhooks", json=hook_body, headers=reader
        )
        assert denied.status_code == 403
        created = embedded_client.post(
            "/v1/models/digits-cnn/webhooks", json=hook_body, headers=writer
        )
        assert created.status_code == 201, created.text
        hook = created.json()
        assert hook["secret"].startswith("whsec_")
        listed = embedded_client.get("/v1/models/digits-cnn/webhooks", headers=reader).json()
        assert [h["id"] for h in listed["items"]] == [hook["id"]]
        assert "secret" not in listed["items"][0]

        accepted = submit(embedded_client, training_ids(seeded, label=3), admin_headers)
        wait_for_status(embedded_client, accepted["id"], admin_headers)
        wait_until(receiver.snapshot, timeout=30, what="the webhook")
        (event,) = _verified(receiver.snapshot(), hook["secret"])
        assert event["type"] == "version.published"
        assert event["data"]["model"] == "digits-cnn"
        assert event["data"]["version"] == 2 and event["data"]["parent"] == 1
        assert event["data"]["request_ids"] == [accepted["id"]]

        # alias.moved was not subscribed, so only the one event came
        def recorded() -> list[Any] | None:  # the attempt is recorded once the POST returned
            items = embedded_client.get(
                f"/v1/models/digits-cnn/webhooks/{hook['id']}/deliveries", headers=reader
            ).json()["items"]
            return items if all(d["status"] != "pending" for d in items) else None

        history = wait_until(recorded, timeout=30, what="the attempt recorded")
        assert [(d["event"], d["status"]) for d in history] == [("version.published", "delivered")]

        gone = embedded_client.delete(
            f"/v1/models/digits-cnn/webhooks/{hook['id']}", headers=writer
        )
        assert gone.status_code == 204
        listed = embedded_client.get("/v1/models/digits-cnn/webhooks", headers=reader).json()
        assert listed["items"] == []
    finally:
        receiver.close()
