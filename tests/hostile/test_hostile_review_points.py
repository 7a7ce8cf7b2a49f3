"""Points 7, 9 and 10 of the outside review: a Range with a 5,000-digit number, an
unbounded number of webhooks per model, the DNS-rebinding window of callback delivery,
and a signature check without timestamp tolerance."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.callbacks.callback_receiver import Receiver

URL = "/v1/models/digits-cnn/versions/1/checkpoint"


def test_ranges_with_huge_numbers_are_416_or_ignored(
    api_client: Any, admin_headers: dict[str, str]
) -> None:
    full = api_client.get(URL, headers=admin_headers)
    size = len(full.content)
    huge = "9" * 5000
    past = api_client.get(URL, headers={**admin_headers, "Range": f"bytes={huge}-"})
    assert past.status_code == 416 and past.headers["content-range"] == f"bytes */{size}"
    assert len(past.text) < 1000  # the header is not echoed back in full
    tail = api_client.get(URL, headers={**admin_headers, "Range": f"bytes=0-{huge}"})
    assert tail.status_code == 206 and tail.content == full.content
    suffix = api_client.get(URL, headers={**admin_headers, "Range": f"bytes=-{huge}"})
    assert suffix.status_code == 206 and suffix.content == full.content
    padded = api_client.get(URL, headers={**admin_headers, "Range": f"bytes={'0' * 5000}1-2"})
    assert padded.status_code == 206 and padded.content == full.content[1:3]


def test_webhooks_per_model_are_capped(seeded: Any, admin_headers: dict[str, str]) -> None:
    from fastapi.testclient import TestClient

    from tests.support.requests import recording_app

    settings = seeded.settings.model_copy(
        update={"callback_allowed_hosts": "127.0.0.1", "max_webhooks_per_model": 3}
    )
    app, _ = recording_app(seeded, settings)
    hook = {"url": "http://127.0.0.1:9/hook", "events": ["version.published"]}
    with TestClient(app) as client:
        made = [
            client.post("/v1/models/digits-cnn/webhooks", json=hook, headers=admin_headers)
            for _ in range(3)
        ]
        assert [r.status_code for r in made] == [201, 201, 201]
        refused = client.post("/v1/models/digits-cnn/webhooks", json=hook, headers=admin_headers)
        assert refused.status_code == 409
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["type"].endswith("/webhook-limit-reached")
        assert "MAX_WEBHOOKS_PER_MODEL" in refused.json()["detail"]
        listed = client.get("/v1/models/digits-cnn/webhooks", headers=admin_headers).json()
        assert len(listed["items"]) == 3  # nothing changed
        gone = made[0].json()["id"]
        assert (
            client.delete(
                f"/v1/models/digits-cnn/webhooks/{gone}", headers=admin_headers
            ).status_code
            == 204
        )
        again = client.post("/v1/models/digits-cnn/webhooks", json=hook, headers=admin_headers)
        assert again.status_code == 201


def test_delivery_connects_to_the_address_it_checked(
    seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS answers the check with an allowed address, then (rebinding) an internal one:
    the delivery still goes to the address that was checked, with the host name in Host."""
    from app.callbacks import sender
    from app.callbacks.models import DeliveryProtocol

    receiver = Receiver()
    port = int(receiver.url().split(":")[2].split("/")[0])
    answers = ["127.0.0.1", "10.255.255.1", "10.255.255.1"]
    lookups: list[str] = []
    real = socket.getaddrinfo

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example":
            lookups.append(host)
            ip = answers[min(len(lookups) - 1, len(answers) - 1)]
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings = seeded.settings.model_copy(
        update={"callback_allowed_hosts": "127.0.0.1/32", "callback_timeout_s": 3.0}
    )
    claimed = sender._Claimed(
        "d-1",
        f"http://rebind.example:{port}/callbacks",
        '{"ok": true}',
        DeliveryProtocol.webhooks,
        "request.status",
        None,
        None,
    )
    import httpx

    try:
        with httpx.Client(timeout=3, follow_redirects=False, trust_env=False) as http:
            result = sender._send(http, claimed, settings)
        assert result.ok, result.error
        assert lookups == ["rebind.example"]  # one lookup: the check's
        (got,) = receiver.snapshot()
        assert got.headers["host"] == f"rebind.example:{port}"
    finally:
        receiver.close()


def test_verify_refuses_stale_or_future_timestamps() -> None:
    from app.callbacks import signing

    key = b"k" * 32
    body = b'{"a":1}'
    now = int(time.time())
    fresh = signing.signature(key, "msg_1", now, body)
    assert signing.verify(key, "msg_1", str(now), body, fresh)
    old = now - signing.TOLERANCE_S - 1
    replayed = signing.signature(key, "msg_1", old, body)
    assert not signing.verify(key, "msg_1", str(old), body, replayed)  # a replayed old message
    future = now + signing.TOLERANCE_S + 1
    assert not signing.verify(
        key, "msg_1", str(future), body, signing.signature(key, "msg_1", future, body)
    )
    assert signing.verify(key, "msg_1", str(old), body, replayed, tolerance_s=10**9)
    assert not signing.verify(key, "msg_1", "9" * 5000, body, fresh)
