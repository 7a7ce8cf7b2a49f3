"""Training sets uploaded at registration live in the store as npz blobs; the engine's `npz`
loader reads a file, so a worker writes the blob once under LETHE_DATA_DIR/datasets."""

from __future__ import annotations

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
