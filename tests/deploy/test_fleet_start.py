"""A fleet that starts at once must start: two workers (`-Q gpu`, `-Q default`) and the API
launched at the same instant against one fresh PostgreSQL database (no architecture spec
published yet) all come up and serve. Both workers publish the engine's architecture specs
as they start; that write is an upsert, so neither fails on the other's row."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from tests.deploy.test_deploy_e2e import ApiProcess
from tests.support.processes import settings_env, stop_process_group
from tests.support.service import make_settings
from tests.support.services import wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


class Worker:
    """`lethe worker -Q <queue> -c 1 --name <name>`, as the issue's operator started them."""

    def __init__(self, settings: Any, log_path: Path, *, queue: str, name: str):
        env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
        env.update(settings_env(settings))
        cmd = [sys.executable, "-m", "lethe.cli", "worker", "-Q", queue, "-c", "1"]
        self.name, self.log_path = name, log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [*cmd, "--name", name],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"worker {self.name} exited:\n{self.log_path.read_text()[-3000:]}")
        return b"ready." in self.log_path.read_bytes()

    def stop(self) -> None:
        stop_process_group(self.proc)
        self._log.close()


def test_two_workers_and_the_api_started_together_all_serve(
    postgres_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, postgres_url, broker_url=redis_url)
    barrier = threading.Barrier(3)
    started: list[Any] = []
    lock = threading.Lock()

    def start(make: Any) -> Any:
        barrier.wait()  # the three Popen calls happen at the same instant
        proc = make()
        with lock:
            started.append(proc)
        return proc

    try:
        with ThreadPoolExecutor(3) as pool:
            gpu, default = (
                pool.submit(
                    start,
                    lambda q=q: Worker(settings, tmp_path / f"{q}.log", queue=q, name=f"fleet-{q}"),
                )
                for q in ("gpu", "default")
            )
            api_future = pool.submit(start, lambda: ApiProcess(settings, tmp_path / "api.log"))
            workers = [gpu.result(), default.result()]
            api = api_future.result()
        for w in workers:
            wait_until(w.ready, timeout=120, what=f"worker {w.name} to be ready")
        # both workers answer on the broker, and the API is ready (database, store, broker)
        from workers.celery_app import make_celery

        replies = make_celery(settings).control.ping(
            destination=[f"fleet-{q}@{os.uname().nodename}" for q in ("gpu", "default")],
            timeout=10,
        )
        assert {next(iter(r)) for r in replies} == {
            f"fleet-{q}@{os.uname().nodename}" for q in ("gpu", "default")
        }
        ready = httpx.get(f"{api.url}/readyz", timeout=10)
        assert ready.status_code == 200, ready.text
        for w in workers:
            assert b"IntegrityError" not in w.log_path.read_bytes()
        # and the specs they raced to publish are there, once each
        import unlearning as ul
        from app.core.db import make_engine
        from app.registry.models import ArchitectureSpec

        engine = make_engine(postgres_url)
        with engine.connect() as conn:
            published = list(conn.scalars(select(ArchitectureSpec.arch_id)))
        engine.dispose()
        assert sorted(published) == ul.architectures.published_architectures()
    finally:
        for proc in started:
            proc.stop()


def test_publishing_a_spec_while_another_worker_publishes_it_waits_then_succeeds(
    postgres_url: str,
) -> None:
    """The race itself, made deterministic: worker B writes the spec while worker A's
    uncommitted write of it holds the row; B waits for A (it is seen waiting on a lock in
    pg_stat_activity), then both commit."""
    from app.core.db import make_engine, make_session_factory
    from app.registry import service as registry
    from app.registry.models import ArchitectureSpec

    engine = make_engine(postgres_url)
    factory = make_session_factory(engine)
    a, b = factory(), factory()
    try:
        registry.put_architecture_spec(session=a, arch_id="tiny", tensors={"w": "a"})
        a.flush()
        b_pid = b.execute(text("SELECT pg_backend_pid()")).scalar_one()
        b_errors: list[BaseException] = []

        def publish_b() -> None:
            try:
                registry.put_architecture_spec(session=b, arch_id="tiny", tensors={"w": "b"})
                b.commit()
            except BaseException as exc:
                b_errors.append(exc)

        thread = threading.Thread(target=publish_b)
        thread.start()

        def b_waits_or_is_done() -> bool:
            if not thread.is_alive():
                return True
            with engine.connect() as conn:
                waiting = conn.execute(
                    text("SELECT wait_event_type FROM pg_stat_activity WHERE pid = :pid"),
                    {"pid": b_pid},
                ).scalar_one_or_none()
            return waiting == "Lock"

        wait_until(b_waits_or_is_done, timeout=30, interval=0.05, what="B to reach the row")
        a.commit()
        thread.join(timeout=30)
        assert not b_errors, b_errors
        with factory() as s:
            assert s.get(ArchitectureSpec, "tiny").tensors == {"w": "b"}  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()
        engine.dispose()
