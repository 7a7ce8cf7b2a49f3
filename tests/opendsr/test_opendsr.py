"""OpenDSR 2.0 against the running app: discovery, a signed round trip whose signatures
verify with the certificate fetched from the served URL, the status mapping, cancellation,
the spec's error shape, and signed OpenDSR status callbacks."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
from sqlalchemy import func, select

from tests.callbacks.callback_receiver import Receiver
from tests.support.requests import training_ids
from tests.support.services import wait_until

DOMAIN = "localhost"  # the default LETHE_OPENDSR_PROCESSOR_DOMAIN


def _signed(resp: Any, certificate: bytes) -> Any:
    """The JSON body of a response (or received callback) whose signature verifies."""
    from app.opendsr.keys import verify

    headers = httpx.Headers(resp.headers)
    content = resp.content if hasattr(resp, "content") else resp.body
    assert headers["X-OpenDSR-Processor-Domain"] == DOMAIN
    signature = headers["X-OpenDSR-Signature"]
    assert verify(certificate, content, signature), "X-OpenDSR-Signature does not verify"
    assert not verify(certificate, content + b" ", signature)
    return json.loads(content)


def _certificate(client: Any) -> tuple[dict[str, Any], bytes]:
    discovery = client.get("/opendsr/v1/discovery")
    assert discovery.status_code == 200, discovery.text
    body = discovery.json()
    cert = client.get(body["processor_certificate"])
    assert cert.status_code == 200
    assert cert.content.startswith(b"-----BEGIN CERTIFICATE-----")
    return _signed(discovery, cert.content), cert.content


def _request(sample_ids: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "regulation": "gdpr",
        "subject_request_id": str(uuid.uuid4()),
        "subject_request_type": "erasure",
        "submitted_time": "2026-11-26T10:00:00Z",
        "api_version": "2.0",
        "extensions": {DOMAIN: {"model": "digits-cnn", "sample_ids": sample_ids}},
        **extra,
    }


def test_round_trip_is_signed_with_the_served_certificate(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    discovery, cert = _certificate(api_client)
    assert discovery["api_version"] == "2.0"
    assert discovery["supported_subject_request_types"] == ["erasure"]
    assert {"identity_type": "email", "identity_format": "raw"} in discovery["supported_identities"]

    sent = json.dumps(_request(training_ids(seeded, limit=3))).encode()
    created = api_client.post(
        "/opendsr/v1/requests",
        content=sent,
        headers={**admin_headers, "content-type": "application/json"},
    )
    assert created.status_code == 201, created.text
    receipt = _signed(created, cert)
    srid = json.loads(sent)["subject_request_id"]
    assert receipt["subject_request_id"] == srid
    assert base64.b64decode(receipt["encoded_request"]) == sent
    assert receipt["controller_id"] == "test"
    assert receipt["expected_completion_time"].endswith("Z")

    status = _signed(api_client.get(f"/opendsr/v1/requests/{srid}", headers=admin_headers), cert)
    assert status["request_status"] == "pending"
    assert status["subject_request_id"] == srid
    assert status["extensions"][DOMAIN]["status"] == "queued"
    native_id = status["extensions"][DOMAIN]["request_id"]
    native = api_client.get(f"/v1/erasure-requests/{native_id}", headers=admin_headers).json()
    assert native["subject_request_id"] == srid and native["sample_count"] == 3

    cancelled = api_client.delete(f"/opendsr/v1/requests/{srid}", headers=admin_headers)
    assert cancelled.status_code == 202, cancelled.text
    assert _signed(cancelled, cert)["subject_request_id"] == srid
    status = _signed(api_client.get(f"/opendsr/v1/requests/{srid}", headers=admin_headers), cert)
    assert status["request_status"] == "cancelled"
    assert status["extensions"][DOMAIN]["status"] == "canceled"

    missing = api_client.get(f"/opendsr/v1/requests/{uuid.uuid4()}", headers=admin_headers)
    assert missing.status_code == 404
    assert _signed(missing, cert)["error"]["code"] == 404
    unauthenticated = api_client.get(f"/opendsr/v1/requests/{srid}")
    assert unauthenticated.status_code == 401
    assert _signed(unauthenticated, cert)["error"]["code"] == 401


def test_other_request_types_are_refused_in_the_spec_error_shape(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from app.core.db import session_scope
    from app.erasure_requests.models import ErasureRequest

    _, cert = _certificate(api_client)
    for kind in ("access", "portability"):
        resp = api_client.post(
            "/opendsr/v1/requests",
            json=_request(training_ids(seeded, limit=1), subject_request_type=kind),
            headers=admin_headers,
        )
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"].startswith("application/json")
        error = _signed(resp, cert)["error"]
        assert error["code"] == 400
        assert kind in error["message"]
        assert error["errors"][0]["reason"] == "UnsupportedSubjectRequestType"
        assert set(error["errors"][0]) == {"domain", "reason", "message"}
    invalid = api_client.post(
        "/opendsr/v1/requests", json={"subject_request_type": "erasure"}, headers=admin_headers
    )
    assert invalid.status_code == 400
    assert {e["domain"] for e in _signed(invalid, cert)["error"]["errors"]} == {"Validation"}
    with session_scope(seeded.session_factory, None) as s:
        assert s.scalar(select(func.count()).select_from(ErasureRequest)) == 0


def test_status_mapping_covers_every_status() -> None:
    from app.erasure_requests.models import RequestStatus
    from app.opendsr.mapping import STATUS

    assert {s: STATUS[s] for s in RequestStatus} == {
        RequestStatus.received: "pending",
        RequestStatus.queued: "pending",
        RequestStatus.running: "in_progress",
        RequestStatus.completed: "completed",
        RequestStatus.canceled: "cancelled",
        RequestStatus.denied: "cancelled",
        RequestStatus.failed: "cancelled",
    }


def test_status_callbacks_speak_opendsr_and_are_signed(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    _, cert = _certificate(embedded_client)
    receiver = Receiver()
    try:
        body = _request(training_ids(seeded, label=3), status_callback_urls=[receiver.url()])
        resp = embedded_client.post("/opendsr/v1/requests", json=body, headers=admin_headers)
        assert resp.status_code == 201, resp.text

        def completed() -> bool:
            return any(b"completed" in r.body for r in receiver.snapshot())

        wait_until(completed, timeout=120, what="the completed callback")
        seen = []
        for r in receiver.snapshot():
            payload = _signed(r, cert)
            assert payload["status_callback_url"] == receiver.url()
            assert payload["subject_request_id"] == body["subject_request_id"]
            seen.append(payload["request_status"])
        assert seen == ["pending", "in_progress", "completed"]
    finally:
        receiver.close()
