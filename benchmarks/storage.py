"""Storage per version: what a head-only method adds to the store versus a full copy.

    lethe bench-storage [--json out.json]

For each architecture, version 1 is stored whole; then versions produced by `lau`
(last layer only), `lau-calibrated` (its cut) and `finetune` (every layer) are put into
the same content-addressed store, and the bytes each one added are reported.
"""

from __future__ import annotations

import json
import tempfile
import time
from typing import Any

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "digits-cnn": ("sklearn-digits", {"seed": 0}),
    "resnet18-cifar": ("synthetic-cifar", {"seed": 0, "n": 500, "n_val": 200, "n_test": 200}),
}
METHODS = ("lau", "lau-calibrated", "finetune")


def measure(arch_id: str, dataset_id: str, params: dict[str, Any]) -> dict[str, Any]:
    import torch

    import unlearning as ul
    from models_store import open_store

    ds = ul.load_dataset(dataset_id, **params)
    torch.manual_seed(0)
    model = ul.get_architecture(arch_id, num_classes=ds.num_classes)
    store = open_store(tempfile.mkdtemp(prefix="lethe-storage-"))
    first = store.put_checkpoint(ul.save_checkpoint(model, arch_id=arch_id))
    row: dict[str, Any] = {"full_bytes": first.total_bytes, "versions": {}}
    data = ds.unlearn_data(ds.train.ids[::10])
    for method in METHODS:
        config = {"epochs": 1} if method == "finetune" else None
        start = time.perf_counter()
        result = ul.unlearn(model, data, method=method, config=config, device="cpu")
        put = store.put_checkpoint(ul.save_checkpoint(result.model, arch_id=arch_id))
        row["versions"][method] = {
            "new_bytes": put.new_bytes,
            "share_of_full": round(put.new_bytes / put.total_bytes, 6),
            "changed_tensors": len(result.changed),
            "seconds": round(time.perf_counter() - start, 2),
        }
    return row


def main(json_path: str | None = None) -> dict[str, Any]:
    report = {arch: measure(arch, *case) for arch, case in CASES.items()}
    print(f"{'architecture':<16}{'full copy':>14}" + "".join(f"{m:>22}" for m in METHODS))
    for arch, row in report.items():
        cells = "".join(
            f"{v['new_bytes']:>12,} ({100 * v['share_of_full']:5.2f}%)"
            for v in row["versions"].values()
        )
        print(f"{arch:<16}{row['full_bytes']:>14,}{cells}")
    if json_path:
        with open(json_path, "w") as fh:
            json.dump(report, fh, indent=2)
    return report
