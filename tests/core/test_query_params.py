"""A query parameter that takes one value, sent twice, is refused (FastAPI alone would keep
the last one silently); the request changes and reveals nothing."""

from __future__ import annotations

from typing import Any


def test_a_single_valued_query_parameter_sent_twice_is_400(
    api_client: Any, admin_headers: dict[str, str]
) -> None:
    resp = api_client.get("/v1/audit?subject=request:a&subject=request:b", headers=admin_headers)
    assert resp.status_code == 400
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "`subject` takes one value" in resp.json()["detail"]
    # aliased parameters too, and once is fine
    twice = api_client.get(
        "/v1/erasure-requests?status=queued&status=failed", headers=admin_headers
    )
    assert twice.status_code == 400 and "`status`" in twice.json()["detail"]
    once = api_client.get("/v1/erasure-requests?status=queued", headers=admin_headers)
    assert once.status_code == 200
    # a refusal before authentication is still 401: the key is checked first
    assert api_client.get("/v1/audit?subject=a&subject=b").status_code == 401
