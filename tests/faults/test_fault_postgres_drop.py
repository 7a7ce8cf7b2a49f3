"""PostgreSQL drops every connection of Lethe's database, several times, while the API
(`lethe serve`, a real uvicorn process with its embedded worker) is under load. Requests
caught by a drop get 503 problem+json (never a 500, a reset connection or a hang); the API
recovers by itself (pool_pre_ping); every 2xx is stored and nothing else is; the audit
chain verifies and every accepted request still ends.

The worst moment for a drop is the COMMIT: the second test drops the connection exactly
then, and the client must get a 503 rather than a 2xx for a change that was rolled back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from tests.faults.fault_checks import NO_GATE, ApiServer, assert_recovered, wait_final
from tests.support.requests import erasure_body, recording_app, submit, training_ids
from tests.support.service import create_key, make_settings
from tests.support.services import POSTGRES_ADMIN_URL, wait_until

CLIENTS = 6
DROPS = 4


def _terminate_backends(database: str, pid: int | None = None) -> int:
    """pg_terminate_backend on every connection to `database` (or only on `pid`)."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    only = "" if pid is None else " AND pid = :pid"
    try:
        with admin.connect() as c:
            return int(
                c.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                        " WHERE datname = :db AND pid <> pg_backend_pid()" + only
                    ),
                    {"db": database, "pid": pid},
                ).scalar_one()
            )
    finally:
        admin.dispose()


def test_postgres_connections_dropped_under_load(
    postgres_url: str, tmp_path: Path, demo_artifacts: Any
) -> None:
    from lethe.demo import seed_demo
    from workers.runtime import build_runtime

    settings = make_settings(tmp_path, postgres_url, **NO_GATE)
    rt = build_runtime(settings)
    seed_demo(rt, artifacts=demo_artifacts)
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    samples = iter(training_ids(rt))  # one fresh sample per request
    take = threading.Lock()
    server = ApiServer(settings, tmp_path / "api.log")
    outcomes: list[tuple[str, int, str, Any]] = []  # (what, status, content type, body)
    accepted: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=server.base, headers=headers, timeout=20) as client:
            while not stop.is_set():
                with take:
                    sample = next(samples)
                for what in ("POST", "GET"):
                    try:
                        if what == "POST":
                            resp = client.post("/v1/erasure-requests", json=erasure_body([sample]))
                        else:
                            resp = client.get("/v1/erasure-requests", params={"limit": 5})
                    except httpx.HTTPError as exc:  # a hang or a dropped connection
                        failures.append(f"{what}: {exc.__class__.__name__}: {exc}")
                        continue
                    body = resp.json() if resp.content else None
                    outcomes.append((what, resp.status_code, resp.headers["content-type"], body))
                    if what == "POST" and resp.status_code == 202:
                        accepted.append(body["id"])

    threads = [threading.Thread(target=load, name=f"load-{i}") for i in range(CLIENTS)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        dropped = []
        for _ in range(DROPS):
            dropped.append(_terminate_backends(make_url(postgres_url).database or ""))
            time.sleep(0.7)
        before_stop = len(outcomes)
        time.sleep(1.0)
        stop.set()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads), "a client is stuck: the API hangs"
        assert sum(dropped) >= DROPS, f"nothing to drop: {dropped}"
        assert len(outcomes) > before_stop, "no request succeeded after the last drop"

        # Recovery without a restart: the same process serves a request end to end.
        with httpx.Client(base_url=server.base, headers=headers, timeout=20) as client:
            with take:
                sample = next(samples)
            resp = client.post("/v1/erasure-requests", json=erasure_body([sample]))
            assert resp.status_code == 202, resp.text
            accepted.append(resp.json()["id"])
        assert server.proc.poll() is None

        statuses = Counter((what, status) for what, status, _, _ in outcomes)
        print(f"dropped backends {dropped}; responses {dict(statuses)}")
        assert not failures, failures[:5]
        for what, status, ctype, body in outcomes:
            if status == 503:
                assert ctype.startswith("application/problem+json"), (what, ctype, body)
                assert body["status"] == 503 and body["detail"], body
            else:
                assert status in (200, 202), (what, status, body)
        assert statuses[("POST", 503)] + statuses[("GET", 503)] >= 1, (
            f"no request was caught by a drop: {dict(statuses)}"
        )

        from app.core.db import session_scope
        from app.erasure_requests.models import ErasureRequest

        with session_scope(rt.session_factory, None) as s:
            stored = s.scalar(select(func.count()).select_from(ErasureRequest))
        assert stored == len(accepted) == len(set(accepted)), (stored, len(accepted))
        wait_final(rt, accepted, timeout=120)
    finally:
        stop.set()
        server.stop()
    assert_recovered(rt, accepted)


def test_connection_dropped_at_commit_answers_503_and_changes_nothing(
    postgres_url: str, tmp_path: Path, demo_artifacts: Any
) -> None:
    from fastapi.testclient import TestClient
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from lethe.demo import seed_demo
    from workers.runtime import build_runtime

    rt = build_runtime(make_settings(tmp_path, postgres_url))
    seed_demo(rt, artifacts=demo_artifacts)
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    database = make_url(postgres_url).database or ""
    armed = threading.Event()
    killed: list[int] = []

    @event.listens_for(rt.session_factory, "before_commit")
    def drop_at_commit(session: Session) -> None:
        # Only the request's own transaction (the one that dispatches jobs) is hit.
        if armed.is_set() and session.info.get("lethe_dispatcher") is not None:
            armed.clear()
            pid = session.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
            killed.append(_terminate_backends(database, pid))

    app, recorder = recording_app(rt)  # nothing runs the jobs: requests stay cancellable
    sample_ids = training_ids(rt, limit=6)
    with TestClient(app, raise_server_exceptions=False) as client:

        def dropped(method: str, path: str, **kwargs: Any) -> None:
            armed.set()
            resp = client.request(method, path, headers=headers, **kwargs)
            assert killed.pop() == 1 and not armed.is_set(), "no connection was dropped"
            assert resp.status_code == 503, (method, path, resp.status_code, resp.text)
            assert resp.headers["content-type"].startswith("application/problem+json")

        accepted = submit(client, sample_ids[:3], headers)["id"]
        url = f"/v1/erasure-requests/{accepted}"
        # The scheduler makes its job just after; only then is the next commit the request's.
        wait_until(lambda: recorder.sent, timeout=10, what="the job to be made")
        dropped("POST", "/v1/erasure-requests", json=erasure_body(sample_ids[3:]))
        dropped("DELETE", url)
        dropped("GET", url)
        # Nothing changed, and the same calls succeed at once without a restart.
        listed = client.get("/v1/erasure-requests", headers=headers).json()["items"]
        assert [r["id"] for r in listed] == [accepted] and listed[0]["status"] == "queued"
        assert client.delete(url, headers=headers).json()["status"] == "canceled"
        wait_until(
            lambda: client.get(url, headers=headers).json()["status"] == "canceled",
            timeout=5,
            what="the cancel to be visible",
        )
    assert_recovered(rt, [accepted])
