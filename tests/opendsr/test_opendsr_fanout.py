"""OpenDSR has no notion of a model: an erasure request without
`extensions[domain].model` fans out to every model holding the subject, and its status
(GET and signed callbacks) summarises the children (issue 14)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.callbacks.callback_receiver import Receiver
from tests.opendsr.test_opendsr import DOMAIN, _certificate, _signed
from tests.support.requests import add_demo_models, demo_subject
from tests.support.services import wait_until

MODELS = ["digits-cnn", "digits-cnn-b", "digits-cnn-c"]


def _by_subject(subject: str, **extra: Any) -> dict[str, Any]:
    return {
        "regulation": "gdpr",
        "subject_request_id": str(uuid.uuid4()),
        "subject_request_type": "erasure",
        "submitted_time": "2026-11-26T10:00:00Z",
        "api_version": "2.0",
        "subject_identities": [
            {"identity_type": "user_id", "identity_value": subject, "identity_format": "raw"}
        ],
        **extra,
    }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_opendsr_erasure_fans_out_and_its_status_summarises_the_models(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str], demo_artifacts: Any
) -> None:
    client, headers = embedded_client, admin_headers
    add_demo_models(seeded, MODELS[1:], demo_artifacts)
    _, cert = _certificate(client)
    subject, samples = demo_subject()
    receiver = Receiver()
    try:
        body = _by_subject(subject, status_callback_urls=[receiver.url()])
        created = client.post("/opendsr/v1/requests", json=body, headers=headers)
        assert created.status_code == 201, created.text
        srid = body["subject_request_id"]

        def completed() -> bool:
            return any(b'"completed"' in r.body for r in receiver.snapshot())

        wait_until(completed, timeout=300, what="the parent's completed callback")
        seen = [_signed(r, cert) for r in receiver.snapshot()]
        # one callback per change of the parent, in order: not one per model
        assert [p["request_status"] for p in seen] == ["pending", "in_progress", "completed"]
        assert [p["extensions"][DOMAIN]["sequence"] for p in seen] == [1, 2, 3]
        last = seen[-1]["extensions"][DOMAIN]
        assert last["model"] is None
        assert [(m["model"], m["status"], m["result_version"]) for m in last["models"]] == [
            (m, "completed", 2) for m in MODELS
        ]

        status = client.get(f"/opendsr/v1/requests/{srid}", headers=headers)
        assert status.status_code == 200, status.text
        answer = _signed(status, cert)
        assert answer["request_status"] == "completed"
        assert [m["model"] for m in answer["extensions"][DOMAIN]["models"]] == MODELS
        for m in answer["extensions"][DOMAIN]["models"]:
            erased = client.get(
                f"/v1/erasure-requests/{m['request_id']}/samples", headers=headers
            ).json()
            assert erased == samples
    finally:
        receiver.close()


def test_an_opendsr_request_nobody_holds_completes_and_sample_ids_need_a_model(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    client, headers = api_client, admin_headers
    _, cert = _certificate(client)
    body = _by_subject("nobody-at-all")
    created = client.post("/opendsr/v1/requests", json=body, headers=headers)
    assert created.status_code == 201, created.text
    status = _signed(
        client.get(f"/opendsr/v1/requests/{body['subject_request_id']}", headers=headers), cert
    )
    assert status["request_status"] == "completed"
    assert status["extensions"][DOMAIN]["models"] == []
    assert status["extensions"][DOMAIN]["status_reason"].startswith("no data held")

    ids = body | {
        "subject_request_id": str(uuid.uuid4()),
        "extensions": {DOMAIN: {"sample_ids": ["digits-00001"]}},
    }
    refused = client.post("/opendsr/v1/requests", json=ids, headers=headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["errors"][0]["reason"] == "ModelRequired"
