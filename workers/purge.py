"""Purge Lethe's own copies of erased samples once the version that erased them is published.

What Lethe holds of a training sample, and what the purge does with it (docs/ERASURE.md,
"What Lethe keeps of an erased sample"):

- the uploaded training set (an npz blob in the store): rewritten without the erased rows,
  the model's `dataset_params.blob` moved to the new digest in one transaction, then the
  old blob deleted from the store (unless another model was registered with the very same
  file) together with every file under `LETHE_DATA_DIR/datasets` that no model uses;
- feature-cache rows: dropped from every table of the local cache directory
  (`LETHE_FEATURE_CACHE_DIR`) and from every table shared through the store
  (`refs/features-<key>`, `models_store.features`), whatever the backbone digest;
- a built-in dataset generated from a package, or data the owner registered by reference
  (a `path` or `location` in the dataset params: their own folder or bucket), is not
  Lethe's copy: nothing is deleted there; the `model.purged` event says so and, for data
  by reference, names the samples the owner must delete (`owner_must_delete`).

Order and retries: the job's phase stays `published` until the purge is done, then turns
`purged`. `run_job` purges right after the publish; housekeeping purges whatever a crash
left `published` (`purge_pending`: the embedded worker's tick; with Celery the beat task
sends `lethe.purge` to the job workers' queue, since they hold the data directory).
Every step is idempotent: a training set without erased rows is not rewritten, replaced
blobs waiting for deletion are listed in `dataset_params.replaced_blobs` (written in the
same transaction as the new digest) until they are gone, a table without the rows is not
rewritten.
"""

from __future__ import annotations

import io
import logging
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from app.audit import service as audit
from app.core.db import session_scope
from app.jobs.models import Job, JobStatus
from app.registry import service as registry
from app.registry.models import Model
from workers.datasets import REPLACED_BLOBS, dataset_folder
from workers.runtime import Runtime

log = logging.getLogger("lethe.purge")

PENDING, DONE = "published", "purged"
"""A succeeded job's phase before and after the purge of what its version erased."""
FEATURES_REF = "features-"
STALE_TEMP_S = 600
"""Temporary files (crashed writes) older than this are removed too: they may hold rows."""

_lock = threading.Lock()  # one purge at a time in a process (the job thread, the tick)


@dataclass
class Purged:
    """What one purge of a model did."""

    model: str
    training_set: str
    """`uploaded` (Lethe's copy, rewritten), `built-in` or `by-reference` (not Lethe's)."""
    erased: int
    training_set_rows: int = 0
    blobs_deleted: list[str] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    feature_rows: int = 0
    owner_must_delete: list[str] = field(default_factory=list)


def _rewrite(store: Any, digest: str, erased: set[str]) -> tuple[str, int]:
    """The npz blob `digest` without the training rows of `erased`: (new digest, rows gone)."""
    import numpy as np

    from app.registry.training_set import to_npz

    with np.load(io.BytesIO(store.get_blob(digest)), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    ids = arrays["ids"].astype(str)
    keep = ~np.isin(ids, np.array(sorted(erased), dtype=ids.dtype))
    gone = int((~keep).sum())
    if not gone:
        return digest, 0
    n = len(ids)
    for name in ("x", "y", "ids", "subjects"):  # the training split's per-row arrays
        if name in arrays and len(arrays[name]) == n:
            arrays[name] = arrays[name][keep]
    return str(store.put_blob(to_npz(arrays))), gone


def _training_set(rt: Runtime, model_id: int, done: Purged) -> None:
    with session_scope(rt.session_factory, None) as s:
        model = s.get(Model, model_id, with_for_update=True)
        assert model is not None
        params = dict(model.dataset_params)
        digest = params.get("blob")
        erased = set(registry.erased_sample_ids(session=s, model_id=model_id))
        if digest and erased:
            new, done.training_set_rows = _rewrite(rt.store, digest, erased)
            if new != digest:
                replaced = [*params.get(REPLACED_BLOBS, []), digest]
                model.dataset_params = {**params, "blob": new, REPLACED_BLOBS: replaced}
    with session_scope(rt.session_factory, None) as s:
        model = s.get(Model, model_id, with_for_update=True)
        assert model is not None
        params = dict(model.dataset_params)
        in_use = {p.get("blob") for p in s.scalars(select(Model.dataset_params))}
        for old in params.get(REPLACED_BLOBS, []):
            if old not in in_use:  # another model registered the same file keeps it
                rt.store.delete_blob(old)
                done.blobs_deleted.append(old)
        folder = dataset_folder(rt.settings)
        if folder.is_dir():
            for path in sorted(folder.iterdir()):
                stale = path.suffix == ".part" and time.time() - path.stat().st_mtime > STALE_TEMP_S
                if (path.suffix == ".npz" and path.stem not in in_use) or stale:
                    path.unlink(missing_ok=True)
                    done.files_deleted.append(path.name)
        if REPLACED_BLOBS in params:
            model.dataset_params = {k: v for k, v in params.items() if k != REPLACED_BLOBS}


def purge_features(rt: Runtime, erased: set[str]) -> int:
    """Drop the rows of `erased` from every feature table, local and shared; rows dropped.
    A row of another model under the same sample id is only recomputed when next needed."""
    from unlearning.cache import drop_rows

    dropped = 0
    local = Path(rt.settings.resolved_feature_cache_dir)
    if local.is_dir():
        for path in sorted(local.glob("*.safetensors")):
            dropped += drop_rows(path, erased)
        for path in local.glob("*.tmp"):
            if time.time() - path.stat().st_mtime > STALE_TEMP_S:
                path.unlink(missing_ok=True)
    store = rt.store
    for ref in store.list_refs(FEATURES_REF):
        old = store.get_ref(ref)
        if old is None:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"{ref.removeprefix(FEATURES_REF)}.safetensors"
            with open(path, "wb") as out:
                for chunk in store.iter_blob(old):
                    out.write(chunk)
            gone = drop_rows(path, erased)
            if not gone:
                continue
            with open(path, "rb") as f:
                new = store.put_blob(f)
        store.put_ref(ref, new)  # the ref moves before the old table goes
        if new != old:
            store.delete_blob(old)
        dropped += gone
    return dropped


def purge_model(rt: Runtime, model_id: int, job_ids: list[str]) -> Purged:
    """Purge what the model's published versions erased; the jobs in `job_ids` become
    `purged`. Safe to run again at any point."""
    with _lock:
        with session_scope(rt.session_factory, None) as s:
            model = s.get(Model, model_id)
            assert model is not None
            name, dataset_id, params = model.name, model.dataset_id, dict(model.dataset_params)
            erased = set(registry.erased_sample_ids(session=s, model_id=model_id))
        kind = "by-reference" if {"path", "location"} & set(params) else "built-in"
        kind = "uploaded" if params.get("blob") else kind
        done = Purged(model=name, training_set=kind, erased=len(erased))
        if kind == "uploaded":
            _training_set(rt, model_id, done)
        elif kind == "by-reference":
            done.owner_must_delete = sorted(erased)
        done.feature_rows = purge_features(rt, erased) if erased else 0
        with session_scope(rt.session_factory, None) as s:
            s.execute(
                update(Job).where(Job.id.in_(job_ids), Job.phase == PENDING).values(phase=DONE)
            )
            data = {k: v for k, v in asdict(done).items() if k != "model"}
            data.update(dataset_id=dataset_id, jobs=sorted(job_ids))
            audit.append(
                session=s,
                type="model.purged",
                actor=f"worker:{rt.worker_name}",
                subject=f"model:{name}",
                data=data,
            )
    log.info(
        "purged %s: %d training rows, %d blobs, %d files, %d feature rows",
        name,
        done.training_set_rows,
        len(done.blobs_deleted),
        len(done.files_deleted),
        done.feature_rows,
    )
    return done


def pending(rt: Runtime) -> dict[int, list[str]]:
    """Model id -> its succeeded jobs whose purge did not finish (torch-free: the light
    Celery worker asks this before sending the purge task to the job workers)."""
    with session_scope(rt.session_factory, None) as s:
        rows = s.execute(
            select(Job.id, Job.model_id).where(
                Job.status == JobStatus.succeeded, Job.phase == PENDING
            )
        ).all()
    by_model: dict[int, list[str]] = defaultdict(list)
    for job_id, model_id in rows:
        by_model[model_id].append(job_id)
    return by_model


def purge_pending(rt: Runtime) -> int:
    """Housekeeping: purge every model with a published version whose purge did not finish
    (a crash between publish and purge); how many models were purged. One failing is logged
    and retried on the next run."""
    by_model = pending(rt)
    purged = 0
    for model_id, job_ids in sorted(by_model.items()):
        try:
            purge_model(rt, model_id, job_ids)
            purged += 1
        except Exception:
            log.exception("purge of model %d failed; housekeeping retries it", model_id)
    return purged


__all__ = ["Purged", "pending", "purge_features", "purge_model", "purge_pending"]
