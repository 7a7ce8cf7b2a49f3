"""Fixtures shared by the service tests: real databases (SQLite and PostgreSQL), a real
filesystem store, the trained demo model, API keys and clients.

Tests that need PostgreSQL or Redis skip when the server is unreachable on a developer's
machine, and FAIL under CI=true: a missing service must never pass silently.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.support.postgres import fresh_database
from tests.support.processes import WorkerProcess
from tests.support.service import create_key, make_settings
from tests.support.services import REDIS_URL, require_service

# --- databases -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """A migrated template database; each test clones it (CREATE DATABASE ... TEMPLATE)."""
    from app.core.migrate import upgrade

    with fresh_database(prefix="lethe_tmpl") as url:
        upgrade(url)
        yield make_url(url).database or ""


def _postgres_db(template: str) -> Iterator[str]:
    with fresh_database(template=template) as url:
        yield url


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

    from tests.support.requests import recording_app

    app, recorder = recording_app(seeded)
    with TestClient(app) as client:
        client.dispatched = recorder.sent
        yield client


# --- distributed mode: real Celery worker processes over Redis --------------------------


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
