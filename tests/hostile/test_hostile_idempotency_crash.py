"""Idempotency keys survive a SIGKILL of the API in the middle of a burst of POSTs.

After the kill, each key is either `completed` WITH its request committed (the response
was stored in the transaction of the change) or neither; once the lease has run out a
retry with the same key replays the committed result or runs the request, and no key
stays locked. Real PostgreSQL, a real `lethe serve` process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select, update

from tests.faults.fault_checks import ApiServer
from tests.support.requests import erasure_body, training_ids
from tests.support.service import create_key, make_settings
from tests.support.services import wait_until


def _state(rt: Any) -> tuple[dict[str, str], set[str]]:
    from app.core.db import session_scope
    from app.erasure_requests.models import ErasureRequest
    from app.idempotency.models import IdempotencyKey

    with session_scope(rt.session_factory, None) as s:
        keys = {k: st for k, st in s.execute(select(IdempotencyKey.key, IdempotencyKey.state))}
        stored = set(s.scalars(select(ErasureRequest.subject_request_id)))
    return keys, stored


def test_keys_of_a_killed_api_are_leases_that_expire(
    tmp_path: Path, postgres_url: str, demo_artifacts: Any
) -> None:
    from lethe.demo import seed_demo
    from workers.runtime import build_runtime

    settings = make_settings(tmp_path, postgres_url, idempotency_lease_s=2.0)
    rt = build_runtime(settings)
    seed_demo(rt, artifacts=demo_artifacts)
    headers = {"Authorization": f"Bearer {create_key(rt, ['erasure:write', 'erasure:read'])}"}
    ids = training_ids(rt)
    bodies = {f"burst-{i}": erasure_body([ids[i]]) for i in range(60)}
    first: dict[str, httpx.Response] = {}
    api = ApiServer(settings, tmp_path / "api-1.log")
    try:

        def post(key: str) -> None:
            with contextlib.suppress(httpx.HTTPError):  # the server died under it
                first[key] = httpx.post(
                    f"{api.base}/v1/erasure-requests",
                    json=bodies[key],
                    headers={**headers, "Idempotency-Key": key},
                    timeout=30,
                )

        threads = [threading.Thread(target=post, args=(k,)) for k in bodies]
        for t in threads:
            t.start()
        wait_until(lambda: len(first) >= 5, timeout=60, interval=0.01, what="some answers")
        os.killpg(api.proc.pid, signal.SIGKILL)
        api.proc.wait(timeout=10)
        for t in threads:
            t.join(60)
    finally:
        api.stop()

    keys, stored = _state(rt)
    answered = {k for k, r in first.items() if r.status_code == 202}
    assert answered and len(answered) < len(bodies), "the kill must land mid-burst"
    for key, body in bodies.items():
        committed = body["subject_request_id"] in stored
        # committed ⇔ its response is stored: nothing committed without a replayable result
        assert committed == (keys.get(key) == "completed"), (key, keys.get(key), committed)
        if key in answered:
            assert committed
    left_locked = [k for k, st in keys.items() if st == "processing"]

    api = ApiServer(settings, tmp_path / "api-2.log")
    try:
        if left_locked:  # within its lease a killed attempt's key still answers 409
            key = left_locked[0]
            busy = httpx.post(
                f"{api.base}/v1/erasure-requests",
                json=bodies[key],
                headers={**headers, "Idempotency-Key": key},
                timeout=30,
            )
            assert busy.status_code in (409, 202), busy.text
        from app.core.db import session_scope, utcnow
        from app.idempotency.models import IdempotencyKey

        with session_scope(rt.session_factory, None) as s:  # let every lease run out
            s.execute(update(IdempotencyKey).values(lease_until=utcnow() - timedelta(seconds=1)))
        for key, body in bodies.items():
            retry = httpx.post(
                f"{api.base}/v1/erasure-requests",
                json=body,
                headers={**headers, "Idempotency-Key": key},
                timeout=30,
            )
            assert retry.status_code == 202, (key, retry.status_code, retry.text)
            if keys.get(key) == "completed":
                assert retry.headers.get("idempotent-replayed") == "true"
            if key in answered:
                assert retry.content == first[key].content
            again = httpx.post(
                f"{api.base}/v1/erasure-requests",
                json=body,
                headers={**headers, "Idempotency-Key": key},
                timeout=30,
            )
            assert again.headers.get("idempotent-replayed") == "true"
            assert again.json()["id"] == retry.json()["id"]
    finally:
        api.stop()
    keys, stored = _state(rt)
    assert set(keys.values()) == {"completed"}
    assert {b["subject_request_id"] for b in bodies.values()} <= stored
    assert len(stored) == len(bodies)  # each exactly once (subject_request_id is unique)
