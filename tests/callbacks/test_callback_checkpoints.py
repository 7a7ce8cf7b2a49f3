"""Every callback carries the newest signed audit checkpoint, and a receiver can check it
with nothing but `cryptography` and `hashlib`: the Ed25519 signature against the public key
it fetched once, then that the request's own audit event is in the tree the checkpoint
signed (an RFC 9162 inclusion proof fetched from the API, verified here from scratch, not
with Lethe's code). A retry sends the same bytes, checkpoint included."""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from tests.callbacks.callback_receiver import Receiver
from tests.support.requests import erasure_body, training_ids
from tests.support.services import wait_until


def _signed_by(checkpoint: dict[str, Any], key: Ed25519PublicKey) -> bool:
    """The receiver's check: Ed25519 over the canonical JSON of every field but the
    signature (sorted keys, no spaces), as docs/SECURITY.md says."""
    body = {k: v for k, v in checkpoint.items() if k != "signature"}
    message = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    try:
        key.verify(base64.b64decode(checkpoint["signature"]), message)
    except Exception:
        return False
    return True


def _included(leaf: bytes, index: int, size: int, path: list[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2, written from the RFC for the receiver (no Lethe import)."""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = hashlib.sha256(b"\x00" + leaf).digest()
    for p in path:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def test_a_receiver_verifies_the_checkpoint_and_finds_its_request_in_it(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from app.callbacks.sender import deliver_due

    pem = api_client.get("/v1/audit/public-key", headers=admin_headers)
    assert pem.status_code == 200
    key = serialization.load_pem_public_key(pem.content)
    assert isinstance(key, Ed25519PublicKey)
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    receiver = Receiver(fail_first=1)
    try:
        body = erasure_body(training_ids(seeded, limit=1), status_callback_urls=[receiver.url()])
        resp = api_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
        assert resp.status_code == 202, resp.text
        request_id = resp.json()["id"]
        # the log is checkpointed (the API's checkpointer does it every interval)
        signed = api_client.get("/v1/audit/checkpoint", headers=admin_headers).json()

        def retried() -> bool:  # the first attempt gets a 500, the retry follows its backoff
            deliver_due(session_factory=seeded.session_factory, settings=seeded.settings)
            return len(receiver.snapshot()) >= 2

        wait_until(retried, timeout=30, what="the callback and its retry")
        received = receiver.snapshot()
    finally:
        receiver.close()

    assert [r.answered for r in received] == [500, 204]
    assert received[0].body == received[1].body  # the retry is the same message
    payload = json.loads(received[-1].body)
    assert payload["data"]["id"] == request_id
    ref = payload["audit"]
    checkpoint = ref["checkpoint"]
    assert checkpoint == signed  # the newest checkpoint when it was first sent
    assert _signed_by(checkpoint, key)
    assert checkpoint["key_id"] == hashlib.sha256(raw).hexdigest()[:16]
    forged = {**checkpoint, "size": checkpoint["size"] + 1}
    assert not _signed_by(forged, key)

    # where to fetch it again, and the proof that the request's audit event is in it
    again = api_client.get(ref["checkpoint_url"], headers=admin_headers)
    assert again.status_code == 200 and again.json() == checkpoint
    events = api_client.get(
        "/v1/audit", params={"subject": f"request:{request_id}"}, headers=admin_headers
    ).json()["items"]
    received_event = next(e for e in events if e["type"] == "request.received")
    assert received_event["seq"] <= checkpoint["size"]
    proof = api_client.get(
        ref["proof_url"].format(seq=received_event["seq"]), headers=admin_headers
    ).json()
    assert proof["leaf"] == received_event["hash"]
    path = [bytes.fromhex(p) for p in proof["path"]]
    root = bytes.fromhex(checkpoint["root"])
    leaf = bytes.fromhex(received_event["hash"])
    assert _included(leaf, received_event["seq"] - 1, checkpoint["size"], path, root)
    # a different event content (hash) is not in that tree
    other = hashlib.sha256(leaf).digest()
    assert not _included(other, received_event["seq"] - 1, checkpoint["size"], path, root)
    assert ref["public_key_url"] == "/v1/audit/public-key"


def test_a_callback_before_the_first_checkpoint_says_so(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from app.callbacks.sender import deliver_due

    receiver = Receiver()
    try:
        body = erasure_body(training_ids(seeded, limit=1), status_callback_urls=[receiver.url()])
        resp = api_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
        assert resp.status_code == 202, resp.text
        deliver_due(session_factory=seeded.session_factory, settings=seeded.settings)
        received = receiver.snapshot()
    finally:
        receiver.close()
    (only,) = received
    assert json.loads(only.body)["audit"] == {
        "checkpoint": None,
        "public_key_url": "/v1/audit/public-key",
    }
