"""Idempotency-Key (IETF draft) on POSTs, and duplicate subject_request_id races."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.support.requests import erasure_body, training_ids
from tests.support.service import create_key


def _count(rt: Any, table: Any) -> int:
    from app.core.db import session_scope

    with session_scope(rt.session_factory, None) as s:
        return s.scalar(select(func.count()).select_from(table)) or 0


def test_same_key_same_body_replays_the_stored_response(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from app.erasure_requests.models import ErasureRequest

    body = erasure_body(training_ids(seeded, limit=2))
    headers = {**admin_headers, "Idempotency-Key": "k-1"}
    first = api_client.post("/v1/erasure-requests", json=body, headers=headers)
    again = api_client.post("/v1/erasure-requests", json=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.content == first.content
    assert again.headers["location"] == first.headers["location"]
    assert again.headers["content-type"] == first.headers["content-type"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert _count(seeded, ErasureRequest) == 1
    # without the key, the duplicate subject_request_id is recognised (200 + original)
    dup = api_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
    assert dup.status_code == 200 and dup.json()["id"] == first.json()["id"]


def test_same_key_different_body_is_422(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    ids = training_ids(seeded, limit=3)
    headers = {**admin_headers, "Idempotency-Key": "k-2"}
    assert (
        api_client.post("/v1/erasure-requests", json=erasure_body(ids[:1]), headers=headers)
    ).status_code == 202
    resp = api_client.post("/v1/erasure-requests", json=erasure_body(ids[1:]), headers=headers)
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.json()["type"].endswith("/idempotency-key-reused")
    # the same key on another route is another request too
    other = api_client.post(
        f"/v1/erasure-requests/{uuid.uuid4()}/extend",
        json={"months": 1, "reason": "x"},
        headers=headers,
    )
    assert other.status_code == 422


def test_keys_are_per_client(api_client: Any, seeded: Any) -> None:
    a = {"X-API-Key": create_key(seeded, ["erasure:write"]), "Idempotency-Key": "shared"}
    b = {"X-API-Key": create_key(seeded, ["erasure:write"]), "Idempotency-Key": "shared"}
    ids = training_ids(seeded, limit=2)
    assert (
        api_client.post("/v1/erasure-requests", json=erasure_body(ids[:1]), headers=a).status_code
        == 202
    )
    assert (
        api_client.post("/v1/erasure-requests", json=erasure_body(ids[1:]), headers=b).status_code
        == 202
    )


def test_error_responses_are_stored_but_5xx_are_not(
    api_client: Any, seeded: Any, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {**admin_headers, "Idempotency-Key": "k-err"}
    body = erasure_body(["no-such-sample"])
    first = api_client.post("/v1/erasure-requests", json=body, headers=headers)
    assert first.status_code == 422
    again = api_client.post("/v1/erasure-requests", json=body, headers=headers)
    assert again.status_code == 422 and again.headers["idempotent-replayed"] == "true"

    from app.erasure_requests import service

    def boom(**_: Any) -> Any:
        raise RuntimeError("database fell over")

    good = erasure_body(training_ids(seeded, limit=1))
    headers = {**admin_headers, "Idempotency-Key": "k-500"}
    with monkeypatch.context() as m:
        m.setattr(service, "submit", boom)
        with pytest.raises(RuntimeError):  # TestClient re-raises what became a 500
            api_client.post("/v1/erasure-requests", json=good, headers=headers)
    retried = api_client.post("/v1/erasure-requests", json=good, headers=headers)
    assert retried.status_code == 202 and "idempotent-replayed" not in retried.headers


def test_concurrent_retry_while_processing_is_409(
    api_client: Any, seeded: Any, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.erasure_requests import service

    entered, release = threading.Event(), threading.Event()
    real = service.submit

    def slow(**kwargs: Any) -> Any:
        entered.set()
        assert release.wait(30)
        return real(**kwargs)

    monkeypatch.setattr(service, "submit", slow)
    body = erasure_body(training_ids(seeded, limit=1))
    headers = {**admin_headers, "Idempotency-Key": "k-slow"}
    results: dict[str, Any] = {}
    t = threading.Thread(
        target=lambda: results.setdefault(
            "first", api_client.post("/v1/erasure-requests", json=body, headers=headers)
        )
    )
    t.start()
    assert entered.wait(30)
    second = api_client.post("/v1/erasure-requests", json=body, headers=headers)
    release.set()
    t.join(30)
    assert second.status_code == 409
    assert second.json()["type"].endswith("/idempotency-key-in-use")
    assert second.headers["retry-after"] == "1"
    assert results["first"].status_code == 202
    third = api_client.post("/v1/erasure-requests", json=body, headers=headers)
    assert third.status_code == 202 and third.content == results["first"].content


def test_invalid_idempotency_key_is_400(api_client: Any, admin_headers: dict[str, str]) -> None:
    resp = api_client.post(
        "/v1/erasure-requests", json={}, headers={**admin_headers, "Idempotency-Key": "x" * 300}
    )
    assert resp.status_code == 400 and resp.json()["type"].endswith("/bad-request")


def test_expired_keys_are_forgotten(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from app.core.db import session_scope, utcnow
    from app.idempotency.models import IdempotencyKey

    ids = training_ids(seeded, limit=2)
    headers = {**admin_headers, "Idempotency-Key": "k-old"}
    api_client.post("/v1/erasure-requests", json=erasure_body(ids[:1]), headers=headers)
    with session_scope(seeded.session_factory, None) as s:
        s.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1)))
    resp = api_client.post("/v1/erasure-requests", json=erasure_body(ids[1:]), headers=headers)
    assert resp.status_code == 202
    # the periodic tick (embedded worker / Celery beat) purges expired keys
    from workers.embedded import EmbeddedWorker

    with session_scope(seeded.session_factory, None) as s:
        s.execute(update(IdempotencyKey).values(expires_at=utcnow() - timedelta(seconds=1)))
    EmbeddedWorker(seeded).tick()
    assert _count(seeded, IdempotencyKey) == 0


def test_concurrent_duplicate_subject_request_id_answers_the_original(
    postgres_url: str, tmp_path: Any, demo_artifacts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two submissions of one subject_request_id race past the duplicate check; the loser
    hits the unique constraint and must answer the original, not a 500."""
    from app.auth.service import Client
    from app.core.db import session_scope
    from app.erasure_requests import service
    from app.erasure_requests.models import ErasureRequest
    from app.erasure_requests.schemas import ErasureRequestCreate
    from lethe.demo import seed_demo
    from tests.support.service import make_settings
    from workers.runtime import build_runtime

    rt = build_runtime(make_settings(tmp_path, postgres_url))
    seed_demo(rt, artifacts=demo_artifacts)
    body = ErasureRequestCreate.model_validate(erasure_body(training_ids(rt, limit=2)))
    barrier = threading.Barrier(2, timeout=30)
    real = service._resolve_samples

    def both_checked(*args: Any) -> Any:
        ids = real(*args)
        barrier.wait()  # both have seen "no existing request" by now
        return ids

    monkeypatch.setattr(service, "_resolve_samples", both_checked)
    client = Client(1, "racer", frozenset({"admin"}), None)
    results: list[Any] = []

    def submit() -> None:
        with session_scope(rt.session_factory, None) as s:
            req, created = service.submit(session=s, body=body, client=client, settings=rt.settings)
            results.append((req.id, created))

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2, results
    assert {r[0] for r in results} == {results[0][0]}
    assert sorted(r[1] for r in results) == [False, True]
    assert _count(rt, ErasureRequest) == 1
