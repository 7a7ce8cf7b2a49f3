"""Training sets uploaded at registration live in the store as npz blobs; the engine's `npz`
loader reads a file, so a worker writes the blob once under LETHE_DATA_DIR/datasets.
A dataset by reference is opened from its stored manifest and its location
(`open_reference`), and its jobs share feature tables through the store
(`feature_cache`)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from app.core.config import Settings
from workers.runtime import Runtime

REPLACED_BLOBS = "replaced_blobs"
"""Training-set blobs a purge replaced and has not deleted yet (`workers.purge`); Lethe's
bookkeeping in `dataset_params`, never passed to the engine."""


def dataset_folder(settings: Settings) -> Path:
    return Path(settings.data_dir) / "datasets"


def materialize(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    """Dataset params for the engine: a `blob` digest becomes a local `path`."""
    params = {k: v for k, v in params.items() if k != REPLACED_BLOBS}
    digest = params.get("blob")
    if not digest:
        return params
    folder = dataset_folder(rt.settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.npz"
    if not path.exists():
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in rt.store.iter_blob(digest):  # verified against its digest
                    out.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    rest = {k: v for k, v in params.items() if k != "blob"}
    return {**rest, "path": str(path.resolve())}


REFERENCE = "reference"
"""`dataset_id` of a dataset by reference (`app.registry.by_reference`)."""


def open_location(rt: Runtime, location: str) -> Any:
    """The engine's Location for a recorded location: an S3 prefix with the configured
    endpoint and credentials, or a folder checked again against LETHE_DATASET_ROOTS."""
    from app.registry.by_reference import confine
    from models_store.locations import open_location as s3_location
    from unlearning.sources import LocalLocation

    where = confine(location, rt.settings)  # ValueError if the roots no longer allow it
    if where.startswith("s3://"):
        s = rt.settings
        return s3_location(
            where,
            s3_endpoint_url=s.s3_endpoint_url,
            s3_region=s.s3_region,
            s3_access_key_id=s.s3_access_key_id,
            s3_secret_access_key=(
                s.s3_secret_access_key.get_secret_value() if s.s3_secret_access_key else None
            ),
        )
    if not Path(where).is_dir():
        raise ValueError(f"the dataset location {where} is not a folder on this worker")
    return LocalLocation(where)


def open_reference(rt: Runtime, params: dict[str, Any], num_classes: int) -> Any:
    """The engine Dataset of a dataset by reference; one per process and registration (its
    location is listed, or its shard headers read, once)."""
    key = json.dumps({**params, "num_classes": num_classes}, sort_keys=True)
    ds = _references.get(key)
    if ds is None:
        from models_store.dataset_manifest import read_manifest
        from unlearning.preprocess import Preprocess
        from unlearning.sources import Rows, reference_dataset

        rows = Rows.from_records(read_manifest(rt.store.get_blob(params["manifest"]), "jsonl").rows)
        ds = reference_dataset(
            rows,
            open_location(rt, params["location"]),
            params["layout"],
            Preprocess.from_dict(params["preprocess"]),
            num_classes=num_classes,
            num_workers=rt.settings.data_workers,
        )
        while len(_references) >= 4:
            _references.pop(next(iter(_references)))
        _references[key] = ds
    return ds


_references: dict[str, Any] = {}


def feature_cache(rt: Runtime, dataset_id: str) -> Any:
    """The feature cache of a job: for a dataset by reference, the local directory is a
    read-through copy of tables shared through the store by every worker of a fleet."""
    import unlearning as ul
    from models_store.features import StoreFeatureRemote

    directory = rt.settings.resolved_feature_cache_dir
    if dataset_id != REFERENCE:
        return ul.FeatureCache(directory)
    return ul.FeatureCache(
        directory, remote=StoreFeatureRemote(rt.store), workers=rt.settings.data_workers
    )
