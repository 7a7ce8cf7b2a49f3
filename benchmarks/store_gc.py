"""`lethe store gc` on a store with 10,000 blobs: 9,000 referenced by 50 checkpoints of
180 tensors each, 1,000 left by puts that crashed before their manifest.

    python -m benchmarks.store_gc [--json out.json]

Times the dry run (list what nothing references) and the real run (delete it) on the
filesystem backend in a temporary directory, and checks every checkpoint still verifies.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from typing import Any

import numpy as np
from safetensors.numpy import save

CHECKPOINTS, TENSORS, ORPHANS = 50, 180, 1000


def measure() -> dict[str, Any]:
    from models_store import open_store

    store = open_store(tempfile.mkdtemp(prefix="lethe-gc-"))
    rng = np.random.default_rng(0)
    shas = []
    for c in range(CHECKPOINTS):
        tensors = {
            f"layer{t}.weight": rng.standard_normal(64, dtype=np.float32) + c
            for t in range(TENSORS)
        }
        shas.append(store.put_checkpoint(save(tensors)).manifest.sha256)
    for i in range(ORPHANS):
        store.put_blob(rng.standard_normal(64, dtype=np.float32).tobytes() + i.to_bytes(4))
    blobs = len(list(store.backend.blob_digests()))
    start = time.perf_counter()
    planned = store.gc(dry_run=True)
    dry_s = time.perf_counter() - start
    start = time.perf_counter()
    done = store.gc()
    real_s = time.perf_counter() - start
    assert len(planned.blobs) == len(done.blobs) == ORPHANS
    assert all(store.verify(store.get_manifest(sha)) == [] for sha in shas)
    return {
        "blobs": blobs,
        "manifests": CHECKPOINTS,
        "orphans_deleted": len(done.blobs),
        "dry_run_s": round(dry_s, 3),
        "gc_s": round(real_s, 3),
    }


def main(json_path: str | None = None) -> dict[str, Any]:
    report = measure()
    print(json.dumps(report, indent=2))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    main(parser.parse_args().json)
