"""A real Lethe server (uvicorn in a thread, embedded worker) for the browser tests, with
a dispatcher that holds jobs until the test releases them, so a request can be watched
while it waits, denied while open, then run to completion."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.service import create_key, make_settings
from tests.support.services import free_port, wait_until


class HeldDispatcher:
    """Passes job ids to the embedded worker only once `release()` was called."""

    def __init__(self, worker: Any):
        self.worker = worker
        self.held: list[str] = []
        self.released = False
        self._lock = threading.Lock()

    def dispatch(self, job_id: str) -> None:
        with self._lock:
            if not self.released:
                self.held.append(job_id)
                return
        self.worker.dispatch(job_id)

    def release(self) -> None:
        with self._lock:
            self.released = True
            held, self.held = self.held, []
        for job_id in held:
            self.worker.dispatch(job_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.worker, name)


@dataclass
class Server:
    url: str
    runtime: Any
    dispatcher: HeldDispatcher
    keys: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def console_server(tmp_path: Path, sqlite_template: Path, demo_artifacts: Any) -> Iterator[Server]:
    import uvicorn

    from app.main import create_app
    from lethe.demo import seed_demo
    from workers.embedded import EmbeddedWorker
    from workers.runtime import build_runtime

    db = tmp_path / "lethe.db"
    shutil.copy(sqlite_template, db)
    settings = make_settings(
        tmp_path, f"sqlite:///{db}", heartbeat_interval_s=0.5, heartbeat_timeout_s=120.0
    )
    rt = build_runtime(settings)
    seed_demo(rt, artifacts=demo_artifacts)
    worker = EmbeddedWorker(rt)
    held = HeldDispatcher(worker)
    rt.dispatcher = held
    app = create_app(settings, dispatcher=held, session_factory=rt.session_factory, store=rt.store)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="console-uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=30, what="uvicorn to start")
    worker.start()
    keys = {
        "admin": create_key(rt, ["admin"], name="dpo-admin"),
        "reader": create_key(rt, ["erasure:read", "models:read", "audit:read"], name="auditor"),
    }
    yield Server(f"http://127.0.0.1:{port}", rt, held, keys)
    worker.stop()
    server.should_exit = True
    thread.join(timeout=30)
