"""Signed erasure receipts: a final request's receipt says what was asked, what was erased
and which version serves now, which versions were retired, the verification metrics and
the final audit event; a portal verifies it offline with `cryptography` and `json` alone,
against the processor certificate OpenDSR's discovery serves."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.requests import erasure_body, submit, training_ids, wait_for_status


def verify_offline(signed: dict[str, Any], certificate_pem: bytes) -> dict[str, Any]:
    """What a portal does with a receipt file: only cryptography and json."""
    public = x509.load_pem_x509_certificate(certificate_pem).public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(
        base64.b64decode(signed["signature"]),
        signed["payload"].encode("utf-8"),
        ec.ECDSA(hashes.SHA256()),
    )
    receipt: dict[str, Any] = json.loads(signed["payload"])
    return receipt


def _certificate(client: Any, headers: dict[str, str]) -> bytes:
    discovery = client.get("/opendsr/v1/discovery", headers=headers)
    assert discovery.status_code == 200, discovery.text
    resp = client.get(discovery.json()["processor_certificate"], headers=headers)
    assert resp.status_code == 200, resp.text
    return resp.content


def test_completed_request_has_a_signed_receipt_verifiable_offline(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    client, headers = embedded_client, admin_headers
    ids = training_ids(seeded)[::50][:3]
    accepted = submit(client, ids, headers)
    rid = accepted["id"]
    assert client.get(f"/v1/erasure-requests/{rid}/receipt", headers=headers).status_code in (
        200,  # the embedded worker may already have finished
        409,
    )
    done = wait_for_status(client, rid, headers)

    resp = client.get(f"/v1/erasure-requests/{rid}/receipt", headers=headers)
    assert resp.status_code == 200, resp.text
    signed = resp.json()
    # stored to disk and read back, as a portal would keep it
    signed = json.loads(json.dumps(signed))
    receipt = verify_offline(signed, _certificate(client, headers))
    assert receipt == signed["receipt"]
    assert receipt["request"]["id"] == rid
    assert receipt["request"]["subject_request_id"] == accepted["subject_request_id"]
    assert receipt["request"]["sample_count"] == 3
    assert receipt["status"] == "completed"
    outcome = receipt["outcome"]
    assert outcome["erased_sample_count"] == 3
    assert outcome["result_version"] == outcome["serving_version"] == done["result_version"] == 2
    assert outcome["retired_versions"] == [1]
    version = client.get("/v1/models/digits-cnn/versions/2", headers=headers).json()
    assert outcome["verification"] == version["metrics"]
    events = client.get(
        "/v1/audit",
        params={"subject": f"request:{rid}", "type": "request.completed"},
        headers=headers,
    ).json()["items"]
    assert [(e["seq"], e["hash"]) for e in events] == [
        (receipt["audit"]["event_seq"], receipt["audit"]["event_hash"])
    ]
    assert receipt["audit"]["chain_head_seq"] >= receipt["audit"]["event_seq"]

    # one changed byte and the signature no longer holds
    forged = dict(
        signed,
        payload=signed["payload"].replace('"erased_sample_count":3', '"erased_sample_count":4'),
    )
    assert forged["payload"] != signed["payload"]
    with pytest.raises(InvalidSignature):
        verify_offline(forged, _certificate(client, headers))


def test_denied_request_has_a_receipt_and_an_open_one_has_none(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    client, headers = api_client, admin_headers
    open_ = submit(client, training_ids(seeded, limit=1), headers)
    early = client.get(f"/v1/erasure-requests/{open_['id']}/receipt", headers=headers)
    assert early.status_code == 409
    assert early.headers["content-type"].startswith("application/problem+json")
    assert "completed, denied or failed" in early.json()["detail"]

    denied = client.post(
        f"/v1/erasure-requests/{open_['id']}/deny",
        json={"ground": "legal_claims", "reason": "litigation hold until 2027"},
        headers=headers,
    )
    assert denied.status_code == 200, denied.text
    signed = client.get(f"/v1/erasure-requests/{open_['id']}/receipt", headers=headers).json()
    receipt = verify_offline(signed, _certificate(client, headers))
    assert receipt["status"] == "denied" and receipt["denial_ground"] == "legal_claims"
    assert receipt["status_reason"] == "litigation hold until 2027"
    assert receipt["outcome"]["erased_sample_count"] == 0
    assert receipt["outcome"]["result_version"] is None
    assert receipt["outcome"]["serving_version"] == 1
    assert receipt["audit"]["event_type"] == "request.denied"


def test_a_subject_no_model_holds_completes_at_once_with_a_receipt(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    client, headers = api_client, admin_headers
    body = erasure_body([])
    del body["sample_ids"]
    body["subject_identities"] = [{"identity_type": "user_id", "identity_value": "never-seen"}]
    resp = client.post("/v1/erasure-requests", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    req = resp.json()
    assert req["status"] == "completed" and req["sample_count"] == 0
    assert req["status_reason"].startswith("no data held")
    assert req["completed_at"] is not None and req["result_version"] is None
    assert client.dispatched == []  # no job: there is nothing to unlearn

    signed = client.get(f"/v1/erasure-requests/{req['id']}/receipt", headers=headers).json()
    receipt = verify_offline(signed, _certificate(client, headers))
    assert receipt["status"] == "completed"
    assert receipt["status_reason"].startswith("no data held")
    assert receipt["outcome"]["erased_sample_count"] == 0
    assert receipt["outcome"]["serving_version"] == 1
    assert receipt["outcome"]["retired_versions"] == []
    events = client.get(
        "/v1/audit", params={"subject": f"request:{req['id']}"}, headers=headers
    ).json()["items"]
    assert [e["type"] for e in events] == ["request.received", "request.completed"]
    assert events[1]["data"] == {"version": None, "no_data_held": True}
    assert receipt["audit"]["event_hash"] == events[1]["hash"]
    # the same subject_request_id again is the same answer, not a second request
    again = client.post("/v1/erasure-requests", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == req["id"]
