"""Cheap refusals first: routing and authentication happen before any body is parsed.

An anonymous 8 MiB JSON body is answered 401 (or 404/405 on a path no route takes)
without the duplicate-key guard, or anything else, having parsed it; an unrouted method
is 405 with every method the path allows, even with a body the guard would refuse.
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
