"""Fixtures shared by the service tests: real databases (SQLite and PostgreSQL), a real
filesystem store, the trained demo model, API keys and clients.

Tests that need PostgreSQL or Redis skip when the server is unreachable on a developer's
machine, and FAIL under CI=true: a missing service must never pass silently.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

POSTGRES_ADMIN_URL = os.environ.get(
    "LETHE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("LETHE_TEST_REDIS_URL", "redis://127.0.0.1:6379/9")


def require_service(name: str, check: Callable[[], Any]) -> None:
    try:
        check()
    except Exception as exc:
        message = f"{name} is unreachable: {exc.__class__.__name__}: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message} (CI=true: the service tests must not be skipped)")
        pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.2, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


# --- databases -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database; each test clones it (CREATE DATABASE ... TEMPLATE)."""
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    require_service("PostgreSQL", lambda: admin.connect().close())
    from app.core.migrate import upgrade

    name = f"lethe_tmpl_{uuid.uuid4().hex[:10]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    upgrade(url)
    yield name
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _postgres_db(template: str) -> Iterator[str]:
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"lethe_t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import sqlite3

    from app.core.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:  # fold the WAL into the file so a copy is complete
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "lethe.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        yield from _postgres_db(request.getfixturevalue("postgres_template"))


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    yield from _postgres_db(request.getfixturevalue("postgres_template"))


@pytest.fixture
def redis_url() -> str:
    import redis

    require_service("Redis", lambda: redis.Redis.from_url(REDIS_URL).ping())
    redis.Redis.from_url(REDIS_URL).flushdb()
    return REDIS_URL


# --- the service ----------------------------------------------------------------------


def make_settings(data_dir: Path, database_url: str, **overrides: Any) -> Any:
    from app.core.config import Settings

    values: dict[str, Any] = {
        "env": "test",
        "data_dir": data_dir,
        "database_url": database_url,
        "store_url": (data_dir / "store").as_uri(),
        "device": "cpu",
        "heartbeat_interval_s": 0.5,
        "heartbeat_timeout_s": 5.0,
        "housekeeping_interval_s": 1.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url)


@pytest.fixture(scope="session")
def demo_artifacts() -> Any:
    """The demo model trained once per test session (a few seconds on the CPU)."""
    from lethe.demo import train_demo

    return train_demo()


@pytest.fixture
def runtime(settings: Any) -> Any:
    from workers.runtime import build_runtime

    return build_runtime(settings)


@pytest.fixture
def seeded(runtime: Any, demo_artifacts: Any) -> Any:
    """The runtime with the demo model `digits-cnn` v1 registered."""
    from lethe.demo import seed_demo

    assert seed_demo(runtime, artifacts=demo_artifacts)
    return runtime


def create_key(
    rt: Any, scopes: list[str], models: list[str] | None = None, name: str = "test"
) -> str:
    from app.auth.service import create_key as create
    from app.core.db import session_scope

    with session_scope(rt.session_factory, None) as s:
        _, key = create(session=s, name=name, scopes=scopes, models=models)
    return key


@pytest.fixture
def admin_headers(runtime: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_key(runtime, ['admin'])}"}


@pytest.fixture
def embedded_client(seeded: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The API with the in-process worker running jobs, as `lethe serve` builds it; a test
    marked `@pytest.mark.overrides(**settings)` gets those settings changed."""
    from fastapi.testclient import TestClient

    from lethe.asgi import build_app

    marker = request.node.get_closest_marker("overrides")
    app = build_app(seeded.settings.model_copy(update=marker.kwargs if marker else {}))
    with TestClient(app) as client:
        yield client


@pytest.fixture
def api_client(seeded: Any) -> Iterator[Any]:
    """The API alone: jobs are created but nothing runs them (a recording dispatcher)."""
    from fastapi.testclient import TestClient

    from tests.helpers import recording_app

    app, recorder = recording_app(seeded)
    with TestClient(app) as client:
        client.dispatched = recorder.sent
        yield client


# --- distributed mode: real Celery worker processes over Redis --------------------------


def settings_env(settings: Any) -> dict[str, str]:
    """The LETHE_* environment that reproduces `settings` in another process."""
    from pydantic import SecretStr

    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None or value == "":
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list | dict):
            value = json.dumps(value)
        env[f"LETHE_{name.upper()}"] = str(value)
    env["LETHE_DATABASE_URL"] = settings.resolved_database_url
    env["LETHE_STORE_URL"] = settings.resolved_store_url
    return env


class WorkerProcess:
    """A real `lethe worker` (Celery, prefork, concurrency 1) in its own process group."""

    def __init__(self, settings: Any, log_path: Path, *, name: str, beat: bool = False):
        import subprocess
        import sys

        env = {k: v for k, v in os.environ.items() if not k.startswith("LETHE_")}
        env.update(settings_env(settings))
        # the CLI users run: `lethe worker -Q gpu,default -c 1 --name ... [--beat]`
        cmd = [sys.executable, "-m", "lethe.cli", "worker", "-Q", "gpu,default", "-c", "1"]
        cmd += ["--name", name, *(["--beat"] if beat else [])]
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_until(
            lambda: b"ready." in log_path.read_bytes() or self.proc.poll() is not None,
            timeout=60,
            what=f"worker {name} to start",
        )
        if self.proc.poll() is not None:
            raise RuntimeError(f"worker {name} exited:\n{log_path.read_text()[-3000:]}")

    def child_pids(self) -> list[int]:
        import subprocess

        out = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
        ).stdout
        return [int(p) for p in out.split()]

    def stop(self) -> None:
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except Exception:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture
def distributed(postgres_url: str, redis_url: str, tmp_path: Path, demo_artifacts: Any) -> Any:
    """PostgreSQL + Redis settings with the demo model seeded; start workers with
    `distributed.worker(name)`. The API in the test process dispatches through Celery."""
    from lethe.demo import seed_demo
    from workers.runtime import build_runtime

    workers: list[WorkerProcess] = []

    class Cluster:
        def __init__(self) -> None:
            self.settings = make_settings(tmp_path, postgres_url, broker_url=redis_url)
            self.runtime = build_runtime(self.settings)
            seed_demo(self.runtime, artifacts=demo_artifacts)

        def configure(self, **overrides: Any) -> None:
            """Change settings for workers and clients started from now on."""
            self.settings = self.settings.model_copy(update=overrides)
            self.runtime.settings = self.settings

        def add_model(self, name: str) -> None:
            seed_demo(self.runtime, name=name, artifacts=demo_artifacts)

        def worker(self, name: str, beat: bool = False) -> WorkerProcess:
            w = WorkerProcess(self.settings, tmp_path / f"{name}.log", name=name, beat=beat)
            workers.append(w)
            return w

        def client(self) -> Any:
            from fastapi.testclient import TestClient

            from lethe.asgi import build_app

            return TestClient(build_app(self.settings))

    yield Cluster()
    for w in workers:
        w.stop()
