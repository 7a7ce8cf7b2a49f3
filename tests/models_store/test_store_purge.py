"""Purging erased samples from what the store holds, on the filesystem and the moto S3
server: an uploaded training set is rewritten without them and the old blob deleted, and a
shared feature table loses their rows; afterwards no stored object holds their bytes."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from models_store.features import StoreFeatureRemote
from tests.models_store.store_harness import Harness


def _stored_objects(harness: Harness) -> list[bytes]:
    """The bytes of every object the store holds, read behind its back."""
    if harness.root is not None:
        return [p.read_bytes() for p in harness.root.rglob("*") if p.is_file()]
    pages = harness.client.get_paginator("list_objects_v2").paginate(Bucket=harness.bucket)
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    return [harness.client.get_object(Bucket=harness.bucket, Key=k)["Body"].read() for k in keys]


def _holds(harness: Harness, needle: bytes) -> bool:
    return any(needle in data for data in _stored_objects(harness))


def test_the_store_keeps_no_bytes_of_purged_samples(harness: Harness, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import unlearning as ul
    from workers.purge import _rewrite, purge_features

    rng = np.random.default_rng(7)
    x = rng.random((20, 1, 8, 8), dtype=np.float32)
    ids = np.array([f"s{i}" for i in range(20)])
    training_set = {"x": x, "y": np.arange(20) % 10, "ids": ids, "x_val": x[:3]}
    buf = io.BytesIO()
    np.savez(buf, **training_set)
    old = harness.store.put_blob(buf.getvalue())
    erased = {"s4", "s11"}
    raw = [x[4].tobytes(), x[11].tobytes()]

    torch.manual_seed(0)
    model = ul.get_architecture("digits-cnn", num_classes=10).eval()
    split = ul.Split(torch.from_numpy(x), torch.arange(20) % 10, tuple(ids.tolist()))
    local = tmp_path / "features"
    (z,) = ul.FeatureCache(local, remote=StoreFeatureRemote(harness.store)).features(model, split)
    rows = [z[4].numpy().tobytes(), z[11].numpy().tobytes()]
    assert all(_holds(harness, r) for r in raw + rows)  # the search finds what is there

    new, gone = _rewrite(harness.store, old, erased)
    assert gone == 2 and new != old
    harness.store.delete_blob(old)
    rt: Any = SimpleNamespace(
        store=harness.store, settings=SimpleNamespace(resolved_feature_cache_dir=local)
    )
    assert purge_features(rt, erased) == 4  # the local table and the shared one
    for needle in raw + rows:
        assert not _holds(harness, needle)
        assert not any(needle in p.read_bytes() for p in local.iterdir())
    with np.load(io.BytesIO(harness.store.get_blob(new))) as f:
        assert f["ids"].tolist() == [i for i in ids.tolist() if i not in erased]
        assert np.array_equal(f["x"], x[[i not in erased for i in ids.tolist()]])
        assert np.array_equal(f["x_val"], x[:3])  # held-out arrays are not training rows
    # a second purge finds nothing left to do
    assert purge_features(rt, erased) == 0
    assert _rewrite(harness.store, new, erased) == (new, 0)
    # the kept rows are served from the purged tables; only the erased ones are recomputed
    fresh = ul.FeatureCache(tmp_path / "other", remote=StoreFeatureRemote(harness.store))
    (again,) = fresh.features(model, split)
    kept = torch.tensor([i not in erased for i in ids.tolist()])
    assert fresh.computed == 2 and torch.equal(again[kept], z[kept])
    assert torch.allclose(again, z, atol=1e-5)
