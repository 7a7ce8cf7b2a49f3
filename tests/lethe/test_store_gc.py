"""`lethe store gc`: the blobs of a put that crashed part-way (no manifest references them)
are listed by --dry-run and deleted by the real run; every version and every blob a model
record points at (an uploaded training set) or a ref names (a shared feature table)
stays."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tests.support.rows import add_model


def _gc(monkeypatch: pytest.MonkeyPatch, settings: Any, *args: str) -> str:
    from lethe.cli.main import app

    monkeypatch.setattr("lethe.cli.main.get_settings", lambda: settings)
    result = CliRunner().invoke(app, ["store", "gc", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_store_gc_deletes_only_unreferenced_blobs(
    seeded: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.core.db import session_scope
    from app.registry.models import ModelVersion

    store = seeded.store
    training_set = store.put_blob(b"an uploaded training set a model record points at")
    add_model(
        seeded,
        "uploaded",
        dataset_params={"blob": training_set, "num_classes": 10},
    )
    with session_scope(seeded.session_factory, None) as s:
        shas = list(s.scalars(select(ModelVersion.checkpoint_sha256)))
    orphans = sorted(store.put_blob(f"crashed put, tensor {i}".encode()) for i in range(3))
    # a feature table shared through the store is referenced by a ref only
    table = store.put_blob(b"a shared feature table")
    store.put_ref("features-backbone", table)

    planned = _gc(monkeypatch, seeded.settings, "--dry-run")
    assert [line.split()[-1] for line in planned.splitlines()[:-1]] == orphans
    assert planned.splitlines()[-1].startswith("would delete 3 unreferenced blob(s)")
    assert all(store.has_blob(d) for d in orphans)

    done = _gc(monkeypatch, seeded.settings)
    assert done.splitlines()[-1].startswith("deleted 3 unreferenced blob(s)")
    assert not any(store.has_blob(d) for d in orphans)
    assert store.get_blob(training_set)
    assert store.get_ref("features-backbone") == table and store.get_blob(table)
    assert shas and all(store.verify(store.get_manifest(sha)) == [] for sha in shas)
    assert _gc(monkeypatch, seeded.settings).splitlines()[-1].startswith("deleted 0 ")
