"""Training sets uploaded at registration live in the store as npz blobs; the engine's `npz`
loader reads a file, so a worker writes the blob once under LETHE_DATA_DIR/datasets."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from workers.runtime import Runtime


def materialize(rt: Runtime, params: dict[str, Any]) -> dict[str, Any]:
    """Dataset params for the engine: a `blob` digest becomes a local `path`."""
    digest = params.get("blob")
    if not digest:
        return params
    folder = Path(rt.settings.data_dir) / "datasets"
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
