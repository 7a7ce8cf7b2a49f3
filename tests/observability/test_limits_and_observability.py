"""Request limits (413 body, 422 too many ids), problem+json everywhere, request ids,
structured logs, Prometheus metrics."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.support.requests import dispatched_job, erasure_body, submit, training_ids


@pytest.fixture
def small_app(seeded: Any) -> Iterator[TestClient]:
    from app.main import create_app

    settings = seeded.settings.model_copy(update={"max_body_bytes": 2048, "max_ids_per_request": 3})
    app = create_app(settings, session_factory=seeded.session_factory, store=seeded.store)
    with TestClient(app) as client:
        yield client


def test_body_over_the_limit_is_413(small_app: TestClient, admin_headers: dict[str, str]) -> None:
    big = erasure_body(["x" * 100] * 40)
    resp = small_app.post("/v1/erasure-requests", json=big, headers=admin_headers)
    assert resp.status_code == 413
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["type"].endswith("/payload-too-large") and problem["limit_bytes"] == 2048


def test_streamed_body_over_the_limit_is_413(
    small_app: TestClient, admin_headers: dict[str, str]
) -> None:
    payload = json.dumps(erasure_body(["x" * 100] * 40)).encode()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 512):
            yield payload[i : i + 512]

    resp = small_app.post(
        "/v1/erasure-requests",
        content=chunks(),
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert resp.status_code == 413
    assert resp.json()["type"].endswith("/payload-too-large")


def test_too_many_ids_is_422(
    small_app: TestClient, seeded: Any, admin_headers: dict[str, str]
) -> None:
    resp = small_app.post(
        "/v1/erasure-requests",
        json=erasure_body(training_ids(seeded, limit=4)),
        headers=admin_headers,
    )
    assert resp.status_code == 422
    assert "exceed the limit of 3" in resp.json()["detail"]
    ok = small_app.post(
        "/v1/erasure-requests",
        json=erasure_body(training_ids(seeded, limit=3)),
        headers=admin_headers,
    )
    assert ok.status_code == 202


def test_errors_are_problems(api_client: Any, admin_headers: dict[str, str]) -> None:
    cases = [
        api_client.get("/nowhere"),
        api_client.put("/healthz"),
        api_client.get("/v1/erasure-requests/not-a-uuid", headers=admin_headers),
        api_client.get("/v1/erasure-requests?cursor=@@@", headers=admin_headers),
        api_client.get("/v1/models/nope", headers=admin_headers),
        api_client.post(
            "/v1/erasure-requests",
            content=b"{not json",
            headers={**admin_headers, "Content-Type": "application/json"},
        ),
    ]
    types = []
    for resp in cases:
        assert resp.headers["content-type"].startswith("application/problem+json"), resp.text
        body = resp.json()
        assert {"type", "title", "status", "detail"} <= set(body)
        assert body["status"] == resp.status_code
        types.append(body["type"].rsplit("/", 1)[1])
    assert types == [
        "not-found",
        "method-not-allowed",
        "validation-error",
        "bad-request",
        "not-found",
        "validation-error",
    ]


def test_request_id_in_and_out_and_in_the_json_log(
    api_client: Any, admin_headers: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    from app.observability.logging import configure_logging

    configure_logging("INFO", "json")
    try:
        given = api_client.get("/healthz", headers={"X-Request-ID": "portal-abc.123"})
        assert given.headers["x-request-id"] == "portal-abc.123"
        made = api_client.get("/v1/models", headers=admin_headers)
        assert len(made.headers["x-request-id"]) == 32
        bad = api_client.get("/healthz", headers={"X-Request-ID": "no spaces\tor tabs"})
        assert bad.headers["x-request-id"] != "no spaces\tor tabs"
        err = capfd.readouterr().err
    finally:
        logging.getLogger().handlers = [
            h for h in logging.getLogger().handlers if not getattr(h, "_lethe", False)
        ]
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [r for r in lines if r["logger"] == "lethe.access"]
    first = next(r for r in access if r["request_id"] == "portal-abc.123")
    assert first["status"] == 200 and first["route"] == "/healthz" and first["method"] == "GET"
    second = next(r for r in access if r["request_id"] == made.headers["x-request-id"])
    assert second["route"] == "/v1/models" and "duration_ms" in second
    assert admin_headers["Authorization"].split()[1] not in err


def test_metrics(api_client: Any, seeded: Any, admin_headers: dict[str, str]) -> None:
    api_client.post(
        "/v1/erasure-requests",
        json=erasure_body(training_ids(seeded, limit=1)),
        headers=admin_headers,
    )
    dispatched_job(api_client)
    api_client.get("/v1/models/nope", headers=admin_headers)
    for page in ("/docs", "/redoc", "/openapi.json", "/nowhere"):
        api_client.get(page)
    resp = api_client.get("/metrics")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
    text = resp.text
    assert (
        'lethe_http_requests_total{method="POST",route="/v1/erasure-requests",status="202"} 1.0'
        in text
    )
    assert (
        'lethe_http_requests_total{method="GET",route="/v1/models/{name}",status="404"} 1.0' in text
    )
    for page in ("/docs", "/redoc", "/openapi.json"):  # the docs have labels of their own
        assert f'lethe_http_requests_total{{method="GET",route="{page}",status="200"}} 1.0' in text
    assert 'lethe_http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
    assert 'lethe_erasure_requests{status="queued"} 1.0' in text
    assert "lethe_queue_depth 1.0" in text
    assert 'lethe_jobs{status="queued"} 1.0' in text
    assert 'lethe_job_duration_seconds_bucket{le="+Inf",status="succeeded"}' in text
    assert "lethe_erasure_requests_overdue_total 0.0" in text


def test_job_durations_after_a_real_job(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from tests.support.requests import wait_for_status

    rid = submit(embedded_client, training_ids(seeded, limit=2), admin_headers)["id"]
    wait_for_status(embedded_client, rid, admin_headers)
    text = embedded_client.get("/metrics").text
    assert 'lethe_job_duration_seconds_count{status="succeeded"} 1.0' in text
    assert 'lethe_erasure_requests{status="completed"} 1.0' in text
