"""Cheap refusals first: routing and authentication happen before any body is parsed.

An anonymous 8 MiB JSON body is answered 401 (or 404/405 on a path no route takes)
without the duplicate-key guard, or anything else, having parsed it, and without the app
having read a single byte of it from the server; an unrouted method is 405 with every
method the path allows, even with a body the guard would refuse.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.service import create_key


def _big_body(limit: int) -> bytes:
    one = b'{"a":1},'
    body = b"[" + one * ((limit - 16) // len(one)) + b'{"a":1}]'
    assert len(body) <= limit
    return body


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    from app.http import json_body

    seen: list[int] = []
    real = json_body.problem

    def spy(body: bytes) -> Any:
        seen.append(len(body))
        return real(body)

    monkeypatch.setattr(json_body, "problem", spy)
    return seen


class BytesRead:
    """An outermost ASGI wrapper counting the body bytes the app pulls from the server."""

    def __init__(self, app: Any):
        self.app, self.count = app, 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            self.count += len(message.get("body", b""))
            return message

        await self.app(scope, counted, send)


def test_an_anonymous_8_mib_body_is_never_read(seeded: Any) -> None:
    from fastapi.testclient import TestClient

    from tests.support.requests import recording_app

    app, _ = recording_app(seeded)
    reads = BytesRead(app)
    body = _big_body(seeded.settings.max_body_bytes)
    headers = {"Content-Type": "application/json"}
    with TestClient(reads) as client:
        for path in ("/v1/erasure-requests", "/opendsr/v1/requests", "/v1/anything"):
            resp = client.post(path, content=body, headers=headers)
            assert resp.status_code in (401, 404), (path, resp.status_code)
        assert reads.count == 0  # answered without reading the body at all
        key = {"X-API-Key": create_key(seeded, ["erasure:write"])}
        resp = client.post("/v1/erasure-requests", content=body, headers={**headers, **key})
        assert resp.status_code == 422 and reads.count == len(body)


def test_an_anonymous_8_mib_body_is_refused_unparsed(
    api_client: Any, seeded: Any, parses: list[int]
) -> None:
    body = _big_body(seeded.settings.max_body_bytes)
    assert len(body) > 8 * 1024 * 1024 - 64
    json_headers = {"Content-Type": "application/json"}
    for path in ("/v1/erasure-requests", "/opendsr/v1/requests", "/v1/models/x/webhooks"):
        for auth in ({}, {"Authorization": "Bearer lethe_000000000000_unknown"}):
            resp = api_client.post(path, content=body, headers={**json_headers, **auth})
            assert resp.status_code == 401, (path, resp.status_code, resp.text[:200])
    assert api_client.post("/v1/anything", content=body, headers=json_headers).status_code == 404
    assert parses == []  # nothing read the anonymous bodies
    # the same body from an authenticated caller is checked (the spy sees it)
    key = {"X-API-Key": create_key(seeded, ["erasure:write"])}
    resp = api_client.post("/v1/erasure-requests", content=body, headers={**json_headers, **key})
    assert resp.status_code == 422 and parses == [len(body)]


def test_unrouted_methods_are_405_with_every_allowed_method(
    api_client: Any, admin_headers: dict[str, str], parses: list[int]
) -> None:
    duplicate = b'{"model": "a", "model": "b"}'
    headers = {**admin_headers, "Content-Type": "application/json"}
    for method in ("PATCH", "PUT", "DELETE"):
        resp = api_client.request(
            method, "/v1/erasure-requests", content=duplicate, headers=headers
        )
        assert resp.status_code == 405, (method, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert set(resp.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    resp = api_client.request(
        "PUT", "/v1/erasure-requests/" + "0" * 8, content=duplicate, headers=headers
    )
    assert resp.status_code == 405
    assert set(resp.headers["allow"].replace(" ", "").split(",")) >= {"GET", "DELETE"}
    assert parses == []
    # on a routed method the guard still refuses the duplicate key
    resp = api_client.post("/v1/erasure-requests", content=duplicate, headers=headers)
    assert resp.status_code == 422 and "repeats the key" in json.dumps(resp.json())
