"""Erased means Lethe keeps no copy: after the version that erases a sample is published,
the sample's raw bytes and its cached activation are in no file of the data directory (the
store, the materialised datasets, the feature cache, the SQLite database) and in no row of
the database (PostgreSQL through pg_dump); later erasures still work on the purged set."""

from __future__ import annotations

import io
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from app.core.db import session_scope
from app.jobs.models import REGISTER, Job
from app.registry.models import Model
from tests.support.registration import register_ready
from tests.support.requests import erasure_body, wait_for_status
from tests.support.service import create_key

NAME = "purged"


def _training_set(x_target: int) -> tuple[bytes, dict[str, Any]]:
    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    ds = load_dataset(DEMO_DATASET, DEMO_PARAMS)
    x = ds.train.x.numpy().copy()
    # the target sample gets a pattern of its own: its 256 bytes occur nowhere else
    x[x_target] += np.random.default_rng(14).uniform(0, 1e-3, x[x_target].shape).astype(x.dtype)
    arrays = {
        "x": x,
        "y": ds.train.y.numpy(),
        "ids": np.array([f"p-{i}" for i in ds.train.ids]),
        "x_val": ds.val.x.numpy(),
        "y_val": ds.val.y.numpy(),
        "ids_val": np.array(list(ds.val.ids)),
        "x_test": ds.test.x.numpy(),
        "y_test": ds.test.y.numpy(),
        "ids_test": np.array(list(ds.test.ids)),
    }
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue(), arrays


def _erase(
    client: Any, ids: list[str], headers: dict[str, str], rt: Any, *, purged: bool = True
) -> int:
    resp = client.post("/v1/erasure-requests", json=erasure_body(ids, model=NAME), headers=headers)
    assert resp.status_code == 202, resp.text
    number = int(wait_for_status(client, resp.json()["id"], headers)["result_version"])
    if not purged:
        return number
    deadline = time.monotonic() + 60  # the purge follows the publish
    while time.monotonic() < deadline:
        with session_scope(rt.session_factory, None) as s:
            if not s.scalar(select(func.count()).where(Job.phase == "published")):
                return number
        time.sleep(0.2)
    raise AssertionError("the purge did not finish")


def _database_dump(rt: Any) -> bytes:
    url = rt.settings.resolved_database_url
    if url.startswith("sqlite"):
        import sqlite3

        path = Path(url.removeprefix("sqlite:///"))
        with sqlite3.connect(path) as conn:
            text = "\n".join(conn.iterdump())
        return text.encode()  # the files themselves lie in the data dir, searched too
    if shutil.which("pg_dump") is None:
        pytest.fail("pg_dump is needed to search the PostgreSQL database")
    from sqlalchemy.engine import make_url

    u = make_url(url)
    dump = subprocess.run(
        [
            "pg_dump",
            "-h",
            u.host or "127.0.0.1",
            "-p",
            str(u.port or 5432),
            "-U",
            u.username or "postgres",
            "--data-only",
            u.database or "",
        ],
        capture_output=True,
        check=True,
    )
    return dump.stdout


def _places_holding(needle: bytes, data_dir: Path, rt: Any) -> list[str]:
    found = [str(p) for p in data_dir.rglob("*") if p.is_file() and needle in p.read_bytes()]
    dump = _database_dump(rt)
    if needle in dump or needle.hex().encode() in dump:
        found.append("database dump")
    return found


def _feature_row(data_dir: Path, sample_id: str) -> bytes:
    from unlearning.cache import _read_table

    for path in (data_dir / "features").glob("*.safetensors"):
        table = _read_table(path)
        if sample_id in table.index:
            return bytes(np.asarray(table.features[table.index[sample_id]]).tobytes())
    raise AssertionError(f"no cached activation of {sample_id}")


def _training_ids(rt: Any) -> list[str]:
    with session_scope(rt.session_factory, None) as s:
        params = s.scalar(select(Model.dataset_params).where(Model.name == NAME))
    with np.load(io.BytesIO(rt.store.get_blob(params["blob"]))) as f:
        return sorted(f["ids"].tolist())


def test_an_erased_sample_leaves_no_copy_and_later_erasures_still_work(
    embedded_client: Any, seeded: Any, demo_artifacts: Any
) -> None:
    client, rt, data_dir = embedded_client, seeded, Path(seeded.settings.data_dir)
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    target = 40
    blob, arrays = _training_set(target)
    ids = [str(i) for i in arrays["ids"]]
    x_id = ids[target]
    # each request erases a handful (one sample alone may need no change at all)
    first, second, third = ids[1::97][:8], [x_id, *ids[2::89][:7]], ids[3::83][:8]
    raw = arrays["x"][target].tobytes()
    register_ready(
        client,
        headers,
        {
            "checkpoint": ("w.safetensors", demo_artifacts.checkpoint),
            "training_set": ("t.npz", blob),
        },
        architecture="digits-cnn",
        name=NAME,
    )
    with session_scope(rt.session_factory, None) as s:
        first_blob = s.scalar(select(Model.dataset_params).where(Model.name == NAME))["blob"]

    # a first erasure caches every retained sample's activation, the target's among them
    assert _erase(client, first, headers, rt) == 2
    row = _feature_row(data_dir, x_id)
    assert _places_holding(raw, data_dir, rt), "the search must find the bytes while they exist"
    assert _places_holding(row, data_dir, rt)
    assert not rt.store.has_blob(first_blob)  # rewritten without `first`, the old blob deleted

    assert _erase(client, second, headers, rt) == 3
    assert _places_holding(raw, data_dir, rt) == []
    assert _places_holding(row, data_dir, rt) == []
    assert _training_ids(rt) == sorted(set(ids) - set(first) - set(second))
    # what remains of it: the id, the version that erased it, the keyed subject hash
    v3 = client.get(f"/v1/models/{NAME}/versions/3", headers=headers).json()
    assert x_id in v3["erased_sample_ids"] and v3["new_sample_ids"] == sorted(second)
    erased = client.get(
        f"/v1/models/{NAME}/samples",
        headers=headers,
        params={"erased": "true", "limit": 100},
    ).json()["items"]
    assert {s["sample_id"]: s["erased_in_version"] for s in erased} == {
        **dict.fromkeys(first, 2),
        **dict.fromkeys(second, 3),
    }

    # a later erasure works on the purged set (it forgets only the new sample)
    assert _erase(client, third, headers, rt) == 4
    v4 = client.get(f"/v1/models/{NAME}/versions/4", headers=headers).json()
    assert v4["metrics"]["forget_count"] == len(third) and v4["erased_count"] == 24
    assert _training_ids(rt) == sorted(set(ids) - set(first) - set(second) - set(third))
    assert _places_holding(raw, data_dir, rt) == []
    assert _places_holding(row, data_dir, rt) == []
    datasets = sorted(p.name for p in (data_dir / "datasets").iterdir())
    with session_scope(rt.session_factory, None) as s:
        live = [p["blob"] for p in s.scalars(select(Model.dataset_params)) if "blob" in p]
    assert set(datasets) <= {f"{d}.npz" for d in live}  # no copy of a replaced blob stays


@pytest.mark.overrides(housekeeping_interval_s=3600)  # no tick unless the test runs it
def test_a_purge_a_crash_interrupted_is_finished_by_housekeeping(
    embedded_client: Any, seeded: Any, demo_artifacts: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.pipeline
    from workers.embedded import EmbeddedWorker
    from workers.runtime import build_runtime

    # the worker dies between the publish and the purge
    monkeypatch.setattr(workers.pipeline, "after_publish", lambda rt, claim: None)
    client, rt, data_dir = embedded_client, seeded, Path(seeded.settings.data_dir)
    headers = {"X-API-Key": create_key(rt, ["admin"])}
    blob, arrays = _training_set(40)
    ids = [str(i) for i in arrays["ids"]]
    raw = arrays["x"][40].tobytes()
    register_ready(
        client,
        headers,
        {
            "checkpoint": ("w.safetensors", demo_artifacts.checkpoint),
            "training_set": ("t.npz", blob),
        },
        architecture="digits-cnn",
        name=NAME,
    )
    erased = [ids[40], *ids[2::89][:7]]
    assert _erase(client, erased, headers, rt, purged=False) == 2
    with session_scope(rt.session_factory, None) as s:
        erasures = select(Job.phase).where(Job.kind != REGISTER)
        assert list(s.scalars(erasures)) == ["published"]  # the purge is owed
    assert _places_holding(raw, data_dir, rt)

    EmbeddedWorker(build_runtime(rt.settings)).tick()  # the next housekeeping run
    assert _places_holding(raw, data_dir, rt) == []
    assert _training_ids(rt) == sorted(set(ids) - set(erased))
    with session_scope(rt.session_factory, None) as s:
        assert list(s.scalars(erasures)) == ["purged"]
