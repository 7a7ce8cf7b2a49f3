"""Shared pieces of the fault tests: servers the tests own (so they may kill them), and
the checks every fault test ends with.

After any fault: every accepted request is in a final state (completed, failed with a
reason, canceled or denied), no job published more than one version, each model's
versions form one chain, and the audit chain verifies.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from tests.support.processes import settings_env, stop_process_group
from tests.support.services import free_port, wait_until

FINAL = ("completed", "failed", "canceled", "denied")
NO_GATE = {"policy_max_ta_drop": 100.0}  # these tests are about delivery, not quality


class RedisServer:
    """A redis-server of the test's own on a free loopback port: it may be killed and
    restarted (empty: no persistence) without touching the shared server."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                    *("--save", "", "--appendonly", "no", "--daemonize", "no"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)

        def up() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()
            try:
                return bool(client.ping())
            except redis.ConnectionError:
                return False

        wait_until(up, timeout=15, what=f"redis-server on port {self.port}")

    def kill(self) -> None:
        """SIGKILL: the server and every message it held are gone."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


class ApiServer:
    """`lethe serve` (uvicorn) in its own process, configured like `settings`."""

    def __init__(self, settings: Any, log_path: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
        env.update(settings_env(settings))
        env.update({"LETHE_HOST": "127.0.0.1", "LETHE_PORT": str(self.port)})
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lethe.cli", "serve"],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def healthy() -> bool:
            assert self.proc.poll() is None, log_path.read_text()[-3000:]
            try:
                return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(healthy, timeout=60, interval=0.3, what="the API to serve /healthz")

    def stop(self) -> None:
        stop_process_group(self.proc)
        self._log.close()


def request_states(rt: Any, request_ids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    from app.core.db import session_scope
    from app.erasure_requests.models import ErasureRequest

    ids = list(request_ids)
    with session_scope(rt.session_factory, None) as s:
        rows = s.scalars(select(ErasureRequest).where(ErasureRequest.id.in_(ids))).all()
        return {r.id: (r.status.value, r.status_reason) for r in rows}


def wait_final(rt: Any, request_ids: Iterable[str], timeout: float) -> dict[str, str]:
    """Wait until every request is in a final state; returns {id: status}."""
    ids = list(request_ids)

    def done() -> dict[str, str] | None:
        states = request_states(rt, ids)
        if len(states) == len(ids) and all(st in FINAL for st, _ in states.values()):
            return {rid: st for rid, (st, _) in states.items()}
        return None

    try:
        return wait_until(done, timeout=timeout, interval=0.5, what="every request to end")
    except AssertionError as exc:
        pending = {k: v for k, v in request_states(rt, ids).items() if v[0] not in FINAL}
        raise AssertionError(f"{exc}; still pending: {pending}; jobs: {jobs(rt)}") from None


def jobs(rt: Any) -> list[tuple[str, str, int, str | None]]:
    from app.core.db import session_scope
    from app.jobs.models import Job

    with session_scope(rt.session_factory, None) as s:
        return [
            (j.id, j.status.value, j.attempts, j.error)
            for j in s.scalars(select(Job).order_by(Job.created_at))
        ]


def audit_events(rt: Any, type_: str | None = None) -> list[tuple[str, str | None, dict]]:
    from app.audit.models import AuditEvent
    from app.audit.service import seal
    from app.core.db import session_scope

    with session_scope(rt.session_factory, None) as s:
        seal(session=s)
        q = select(AuditEvent).order_by(AuditEvent.seq)
        if type_ is not None:
            q = q.where(AuditEvent.type == type_)
        return [(e.type, e.subject, e.data) for e in s.scalars(q)]


def assert_recovered(rt: Any, request_ids: Iterable[str]) -> list[Any]:
    """The end of every fault test: all accepted requests final (a failure carries its
    reason), each job published at most one version, versions chain, audit verifies.
    Returns the versions of all models (ordered by model, number)."""
    from app.audit import service as audit
    from app.core.db import session_scope
    from app.jobs.models import Job
    from app.registry.models import ModelVersion

    ids = list(request_ids)
    states = request_states(rt, ids)
    assert set(states) == set(ids), f"requests lost: {set(ids) - set(states)}"
    for rid, (status, reason) in states.items():
        assert status in FINAL, f"request {rid} is still {status}"
        if status == "failed":
            assert reason, f"request {rid} failed without a reason"
    with session_scope(rt.session_factory, None) as s:
        versions = list(
            s.scalars(select(ModelVersion).order_by(ModelVersion.model_id, ModelVersion.number))
        )
        by_model: dict[int, list[int]] = {}
        for v in versions:
            by_model.setdefault(v.model_id, []).append(v.number)
            if v.number > 1:
                assert v.parent_number == v.number - 1
        for numbers in by_model.values():
            assert numbers == list(range(1, len(numbers) + 1)), f"versions not a chain: {numbers}"
        published = [v.job_id for v in versions if v.job_id is not None]
        assert len(published) == len(set(published)), "a job published twice"
        succeeded = set(s.scalars(select(Job.id).where(Job.status == "succeeded")))
        assert succeeded == set(published)
        published_events = [d["job"] for _, _, d in audit_events(rt, "version.published")]
        assert len(published_events) == len(set(published_events)) == len(published)
        check = audit.verify(session=s)
        assert check.ok, f"audit chain broken at {check.first_broken_seq}: {check.reason}"
        s.expunge_all()
    return versions
