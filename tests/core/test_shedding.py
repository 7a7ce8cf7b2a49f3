"""Shedding: beyond the admission limit, and with the database pool exhausted, requests
are answered 503 problem+json with Retry-After at once; nothing of them runs."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tests.support.requests import erasure_body, recording_app, training_ids


def _count(rt: Any) -> int:
    from app.core.db import session_scope
    from app.erasure_requests.models import ErasureRequest

    with session_scope(rt.session_factory, None) as s:
        return s.scalar(select(func.count()).select_from(ErasureRequest)) or 0


def test_requests_beyond_the_admission_limit_are_shed(
    seeded: Any, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.erasure_requests import service

    app, _ = recording_app(seeded, seeded.settings.model_copy(update={"max_in_flight_requests": 1}))
    entered, release = threading.Event(), threading.Event()
    real = service.submit

    def slow(**kwargs: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return real(**kwargs)

    monkeypatch.setattr(service, "submit", slow)
    ids = training_ids(seeded, limit=2)
    results: dict[str, Any] = {}
    with TestClient(app) as client:
        first = threading.Thread(
            target=lambda: results.setdefault(
                "first",
                client.post(
                    "/v1/erasure-requests", json=erasure_body(ids[:1]), headers=admin_headers
                ),
            )
        )
        first.start()
        assert entered.wait(30)
        shed = client.post(
            "/v1/erasure-requests", json=erasure_body(ids[1:]), headers=admin_headers
        )
        assert shed.status_code == 503
        assert shed.headers["content-type"].startswith("application/problem+json")
        assert shed.json()["type"].endswith("/overloaded") and shed.headers["retry-after"] == "1"
        assert client.get("/healthz").status_code == 200  # an overloaded process is alive
        release.set()
        first.join(30)
        assert results["first"].status_code == 202
        assert _count(seeded) == 1  # the shed request did nothing
        after = client.post(
            "/v1/erasure-requests", json=erasure_body(ids[1:]), headers=admin_headers
        )
        assert after.status_code == 202


def test_an_exhausted_database_pool_is_503_not_500(
    seeded: Any, admin_headers: dict[str, str]
) -> None:
    if not seeded.settings.resolved_database_url.startswith("postgresql"):
        pytest.skip("the connection pool of PostgreSQL")
    from app.core.db import make_engine, make_session_factory
    from app.main import create_app
    from tests.support.requests import RecordingDispatcher

    engine = make_engine(
        seeded.settings.resolved_database_url, pool_size=1, max_overflow=0, pool_timeout=0.2
    )
    app = create_app(
        seeded.settings,
        dispatcher=RecordingDispatcher(),
        session_factory=make_session_factory(engine),
        store=seeded.store,
    )
    body = erasure_body(training_ids(seeded, limit=1))
    with TestClient(app) as client:
        held = engine.connect()  # the one connection is busy
        try:
            for headers in (admin_headers, {**admin_headers, "Idempotency-Key": "pool-k"}):
                resp = client.post("/v1/erasure-requests", json=body, headers=headers)
                assert resp.status_code == 503, resp.text
                assert resp.headers["content-type"].startswith("application/problem+json")
                assert resp.headers["retry-after"] == "1"
        finally:
            held.close()
        assert (
            client.post("/v1/erasure-requests", json=body, headers=admin_headers).status_code == 202
        )
    engine.dispose()
