"""The model store fails a write while a job publishes its checkpoint (the disk fills up
after some blobs were written, or right before the manifest). Nothing is published by the
failed attempt; the job is retried and publishes exactly one version; every version's
manifest references only blobs that are stored and sound."""

from __future__ import annotations

import errno
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.faults.fault_checks import NO_GATE, assert_recovered, audit_events, jobs
from tests.support.requests import submit, training_ids, wait_for_status
from tests.support.service import create_key, make_settings


class FailingBackend:
    """Delegates to the real backend, but the first call of `operation` raises ENOSPC
    (on its `nth` call: nth=2 fails after one blob of the checkpoint was written)."""

    def __init__(self, backend: Any, operation: str, nth: int = 1) -> None:
        self._backend, self._operation, self._nth = backend, operation, nth
        self.calls = 0
        self.failed = False

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._backend, name)
        if name != self._operation:
            return real

        def maybe_fail(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if not self.failed and self.calls == self._nth:
                self.failed = True
                raise OSError(errno.ENOSPC, "No space left on device")
            return real(*args, **kwargs)

        return maybe_fail


@pytest.fixture
def embedded_on_postgres(postgres_url: str, tmp_path: Path, demo_artifacts: Any) -> Iterator[Any]:
    """The demo model seeded on PostgreSQL; the test swaps the store's backend before it
    starts the API and its embedded worker on this runtime."""
    from lethe.demo import seed_demo
    from workers.runtime import build_runtime

    rt = build_runtime(make_settings(tmp_path, postgres_url, **NO_GATE))
    seed_demo(rt, artifacts=demo_artifacts)
    yield rt


@pytest.mark.parametrize(
    ("operation", "nth"),
    [("write_blob", 2), ("write_manifest", 1)],
    ids=["after-one-blob", "before-the-manifest"],
)
def test_store_write_fails_once_job_retries_and_publishes_once(
    embedded_on_postgres: Any, operation: str, nth: int
) -> None:
    from fastapi.testclient import TestClient

    from app.core.db import session_scope
    from app.main import create_app
    from app.registry.models import ModelVersion
    from workers.embedded import EmbeddedWorker

    rt = embedded_on_postgres
    failing = FailingBackend(rt.store.backend, operation, nth)
    rt.store.backend = failing
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    worker = EmbeddedWorker(rt)
    app = create_app(
        rt.settings, dispatcher=worker, session_factory=rt.session_factory, store=rt.store
    )
    worker.start()
    try:
        with TestClient(app) as client:
            accepted = submit(client, training_ids(rt, limit=3), headers)
            request_id = accepted["id"]
            done = wait_for_status(client, request_id, headers, timeout=90)
    finally:
        worker.stop()
    assert failing.failed, f"the store never called {operation} {nth} time(s)"
    assert done["result_version"] == 2

    [(_, status, attempts, _)] = jobs(rt)
    assert (status, attempts) == ("succeeded", 2)
    [attempt_failed] = [d for _, _, d in audit_events(rt, "job.attempt_failed")]
    assert attempt_failed["attempt"] == 1 and "No space left" in attempt_failed["reason"]

    versions = assert_recovered(rt, [request_id])
    assert [v.number for v in versions] == [1, 2]
    with session_scope(rt.session_factory, None) as s:
        # v1 still contains the erased samples: it is retired and its blobs may be purged
        # already (issue 14); every live version's checkpoint is whole
        live = select(ModelVersion.checkpoint_sha256).where(ModelVersion.retired_at.is_(None))
        shas = list(s.scalars(live))
    assert len(shas) == 1
    for sha in shas:
        assert rt.store.has_manifest(sha)
        assert rt.store.verify(rt.store.get_manifest(sha)) == []
