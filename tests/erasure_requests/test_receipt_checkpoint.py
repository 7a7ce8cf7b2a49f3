"""A receipt hands out the newest signed audit checkpoint, inside what the processor key
signs, and, once that checkpoint covers the request's final event, where its inclusion
proof is; the proof's leaf is the event the receipt names."""

from __future__ import annotations

import json
from typing import Any

from tests.support.requests import submit, training_ids


def test_the_receipt_carries_the_checkpoint_that_covers_its_final_event(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    created = submit(api_client, training_ids(seeded, limit=1), admin_headers)
    denied = api_client.post(
        f"/v1/erasure-requests/{created['id']}/deny",
        json={"ground": "legal_claims", "reason": "litigation hold"},
        headers=admin_headers,
    )
    assert denied.status_code == 200, denied.text
    url = f"/v1/erasure-requests/{created['id']}/receipt"
    before = api_client.get(url, headers=admin_headers).json()["receipt"]["audit"]
    assert before["checkpoint"]["checkpoint"] is None  # nothing signed yet: it says so

    signed = api_client.get("/v1/audit/checkpoint", headers=admin_headers).json()
    receipt = api_client.get(url, headers=admin_headers).json()
    assert json.loads(receipt["payload"]) == receipt["receipt"]  # inside what is signed
    audit = receipt["receipt"]["audit"]
    ref = audit["checkpoint"]
    assert ref["checkpoint"] == signed
    assert ref["checkpoint_url"] == f"/v1/audit/checkpoints/{signed['size']}"
    assert ref["proof_url"] == f"/v1/audit/events/{audit['event_seq']}/proof?size={signed['size']}"
    proof = api_client.get(ref["proof_url"], headers=admin_headers).json()
    assert proof["leaf"] == audit["event_hash"] and proof["checkpoint"] == signed
