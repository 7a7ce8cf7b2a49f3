"""Removing what the store no longer needs, on every backend: a retired checkpoint's blobs
that no live checkpoint shares, and blobs no manifest references (a put that crashed)."""

from __future__ import annotations

import hashlib

import pytest

from models_store import BlobNotFound
from tests.models_store.safetensors_builders import METADATA, tiny_model, to_bytes
from tests.models_store.store_harness import Harness


def test_retired_head_only_version_loses_its_head_never_the_shared_backbone(
    harness: Harness,
) -> None:
    store = harness.store
    old_tensors, new_tensors = tiny_model(), tiny_model(head_seed=1)
    old = store.put_checkpoint(to_bytes(old_tensors, METADATA)).manifest
    new = store.put_checkpoint(to_bytes(new_tensors, METADATA)).manifest
    old_heads = {t.digest for t in old.tensors if t.name.startswith("head.")}
    shared = {t.digest for t in old.tensors} & {t.digest for t in new.tensors}
    assert shared and old_heads.isdisjoint(shared)

    removed = store.delete_checkpoints([old.sha256], keep=[new.sha256])

    assert set(removed.blobs) == old_heads
    assert removed.manifests == [old.sha256]
    assert removed.bytes == sum(t.length for t in old.tensors if t.digest in old_heads)
    assert not store.has_manifest(old.sha256)
    assert not any(store.has_blob(d) for d in old_heads)
    assert all(store.has_blob(d) for d in shared)
    assert store.verify(store.get_manifest(new.sha256)) == []


def test_a_checkpoint_still_kept_is_never_removed(harness: Harness) -> None:
    put = harness.store.put_checkpoint(to_bytes(tiny_model(), METADATA)).manifest
    removed = harness.store.delete_checkpoints([put.sha256], keep=[put.sha256])
    assert removed.blobs == [] and removed.manifests == []
    assert harness.store.verify(harness.store.get_manifest(put.sha256)) == []


def test_gc_removes_only_blobs_nothing_references_and_dry_run_removes_nothing(
    harness: Harness,
) -> None:
    store = harness.store
    live = store.put_checkpoint(to_bytes(tiny_model(), METADATA)).manifest
    training_set = store.put_blob(b"an uploaded training set the database points at")
    # a put that crashed after writing a blob and before its manifest
    orphan_bytes = b"a tensor of a checkpoint whose manifest was never written"
    orphan = store.put_blob(orphan_bytes)
    assert hashlib.sha256(orphan_bytes).hexdigest() == orphan

    planned = store.gc(keep_blobs=[training_set], dry_run=True)
    assert planned.blobs == [orphan] and planned.bytes == len(orphan_bytes)
    assert store.has_blob(orphan)

    done = store.gc(keep_blobs=[training_set])
    assert done.blobs == [orphan]
    assert not store.has_blob(orphan)
    assert store.get_blob(training_set)
    assert store.verify(store.get_manifest(live.sha256)) == []
    assert store.gc(keep_blobs=[training_set]).blobs == []
    with pytest.raises(BlobNotFound):
        store.get_blob(orphan)
