"""Benchmarks of issue 12: a torchvision ResNet-18 over generated image files.

    python -m benchmarks.torchvision_images warmup  --n 50000 --dir /tmp/shapes50k --workers 2
    python -m benchmarks.torchvision_images erasure --sizes 5000,50000,200000 --dir /tmp/shapes200k
    python -m benchmarks.torchvision_images quality --n 500 --epochs 8 --seeds 3

- ``warmup``: the feature cache's warm-up (``FeatureCache.features`` over an ImageFolder of
  PNGs, DataLoader workers) against a bare ``DataLoader`` + ``model.eval()`` forward loop
  over the same files with the same transforms, batch size and workers, in the same run
  (alternating, best of ``--repeats``).
- ``erasure``: one ``lau`` erasure of 10 samples on a warm ``torchvision:resnet18`` (trained
  briefly on the first 2,000 samples, then fixed) as the dataset grows: per size, the
  table is warmed once, then a fresh ``FeatureCache`` on the same directory (as a new worker
  process would find it) serves ``unlearn_data`` + ``unlearn``.
- ``quality``: UA/RA/TA/MIA/Avg. Gap vs retrain on the in-memory ``shapes`` set for the
  scopes class, random 10% and most of a class (90% of one class), over seeds; the MIA's
  non-members are the TEST split; the noise floor is a second retrain (another seed) against
  the first.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import unlearning as ul
from unlearning import shapes, sources
from unlearning.bench import _config, forget_ids
from unlearning.metrics import GAP_KEYS, avg_gap, mia_efficacy
from unlearning.preprocess import Preprocess
from unlearning.training import TrainRecipe

ARCH = "torchvision:resnet18"
PRE = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _ensure_folder(root: Path, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` PNGs in an ImageFolder tree (kept between runs); all rows in split train."""
    manifest = root / "manifest.csv"
    if manifest.exists():
        with open(manifest, newline="") as f:
            rows = list(csv.DictReader(f))
        if len(rows) >= n:
            return rows[:n]
    t0 = time.perf_counter()
    rows = shapes.write_image_folder(root, n, 0, 0, seed=seed)
    _log(f"wrote {n} PNGs under {root} in {time.perf_counter() - t0:.0f}s")
    return [{k: str(v) for k, v in r.items()} for r in rows]


def _rows(records: Sequence[dict[str, Any]], val_every: int = 10) -> sources.Rows:
    """Every ``val_every``-th row held out (val, then test alternately)."""
    out = []
    for k, r in enumerate(records):
        split = "train"
        if k % val_every == val_every - 1:
            split = "val" if (k // val_every) % 2 == 0 else "test"
        out.append({**r, "split": split})
    return sources.Rows.from_records(out)


def warmup(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(args.dir)
    records = _ensure_folder(root, args.n)
    rows = sources.Rows.from_records(
        [{**r, "split": "train"} for r in records[:-1]] + [{**records[-1], "split": "val"}]
    )
    ds = sources.reference_dataset(
        rows, sources.LocalLocation(root), "image-folder", PRE, num_classes=10
    )
    model = ul.get_architecture(ARCH, num_classes=10).eval()
    lower, _ = model.split(1)
    dev = torch.device(args.device)
    bare_s, cache_s = [], []
    for rep in range(args.repeats):
        for which in ("bare", "cache") if rep % 2 == 0 else ("cache", "bare"):
            t0 = time.perf_counter()
            if which == "bare":
                batches = torch.utils.data.DataLoader(
                    torch.utils.data.Subset(ds.train.source, range(len(ds.train))),  # type: ignore[arg-type]
                    batch_size=args.batch_size,
                    num_workers=args.workers,
                )
                n = 0
                with torch.no_grad():
                    for x in batches:
                        n += len(lower(x.to(dev)))
                bare_s.append(time.perf_counter() - t0)
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    cache = ul.FeatureCache(tmp, batch_size=args.batch_size, workers=args.workers)
                    cache.features(model, ds.train, device=dev)
                    assert cache.computed == len(ds.train)
                cache_s.append(time.perf_counter() - t0)
            _log(f"rep {rep} {which}: {time.perf_counter() - t0:.1f}s")
    best_bare, best_cache = min(bare_s), min(cache_s)
    return {
        "samples": len(ds.train),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "bare_s": bare_s,
        "cache_s": cache_s,
        "bare_samples_per_s": len(ds.train) / best_bare,
        "cache_samples_per_s": len(ds.train) / best_cache,
        "ratio": best_bare / best_cache,
    }


def erasure(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    root = Path(args.dir)
    records = _ensure_folder(root, max(sizes))
    location = sources.LocalLocation(root)
    torch.manual_seed(0)
    small = sources.reference_dataset(
        _rows(records[:2000]), location, "image-folder", PRE, num_classes=10
    )
    t0 = time.perf_counter()
    model = ul.train_model(
        ARCH,
        small.train.subset(torch.arange(len(small.train))),
        recipe=TrainRecipe(epochs=args.epochs, batch_size=128),
        seed=0,
        device=args.device,
    )
    _log(
        f"trained the fixed model on {len(small.train)} samples in {time.perf_counter() - t0:.0f}s"
    )
    out: dict[str, Any] = {"sizes": {}}
    for n in sizes:
        ds = sources.reference_dataset(
            _rows(records[:n]), location, "image-folder", PRE, num_classes=10
        )
        cache_dir = Path(args.cache_dir) / f"n{n}"
        t0 = time.perf_counter()
        warm = ul.FeatureCache(cache_dir, batch_size=256, workers=args.workers)
        warm.features(model, ds.train, ds.val, ds.test, device=args.device)
        warm_s = time.perf_counter() - t0
        _log(f"n={n}: warmed {warm.computed} rows in {warm_s:.0f}s")
        times, unlearn_only = [], []
        rng = np.random.default_rng(1)
        for rep in range(args.repeats):
            forget = [ds.train.ids[i] for i in rng.choice(len(ds.train), 10, replace=False)]
            t0 = time.perf_counter()
            cache = ul.FeatureCache(cache_dir)  # as a fresh worker finds it
            data = ds.unlearn_data(forget)
            res = ul.unlearn(model, data, "lau", {"seed": rep}, device=args.device, cache=cache)
            times.append(time.perf_counter() - t0)
            unlearn_only.append(res.elapsed_s)
            assert cache.computed == 0, "the erasure computed features"
            _log(f"n={n} rep {rep}: {times[-1]:.3f}s (unlearn {res.elapsed_s:.3f}s)")
        out["sizes"][str(n)] = {
            "train_rows": len(ds.train),
            "warm_s": warm_s,
            "erasure_s": times,
            "median_s": float(np.median(times)),
            "unlearn_median_s": float(np.median(unlearn_only)),
        }
    first, last = out["sizes"][str(sizes[0])], out["sizes"][str(sizes[-1])]
    out["ratio_largest_to_smallest"] = last["median_s"] / first["median_s"]
    return out


def _conf(model: ul.SplitModel, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        p = torch.softmax(_logits(model, x), 1)
    out: np.ndarray = p[torch.arange(len(y)), y].numpy()
    return out


def _logits(model: ul.SplitModel, x: torch.Tensor) -> torch.Tensor:
    from unlearning.loop import predict

    return predict(model.eval(), x, "cpu", batch_size=256)


def _metrics(model: ul.SplitModel, data: ul.UnlearnData, seed: int) -> dict[str, float]:
    from unlearning.metrics import evaluate

    met = evaluate(model, data, "cpu", None, seed=seed)
    test = data.test
    if data.forgotten_classes:
        keep = ~torch.isin(test.y, torch.tensor(data.forgotten_classes))
        test = test.subset(keep)
    # MIA with the TEST split as non-members (the protocol of UNLEARNING.md).
    met["MIA"] = mia_efficacy(
        _conf(model, data.retain.x, data.retain.y),
        _conf(model, test.x, test.y),
        _conf(model, data.forget.x, data.forget.y),
        seed=seed,
    )
    return {k: float(v) for k, v in met.items() if v is not None}


def _most_of_class(ds: ul.Dataset, seed: int, k: int = 3, frac: float = 0.9) -> list[str]:
    idx = [i for i, y in enumerate(ds.train.y.tolist()) if y == k]
    rng = np.random.default_rng(seed + 1)
    chosen = rng.choice(len(idx), round(frac * len(idx)), replace=False)
    return [ds.train.ids[idx[i]] for i in sorted(chosen)]


def quality(args: argparse.Namespace) -> dict[str, Any]:
    methods = args.methods.split(",")
    recipe = TrainRecipe(epochs=args.epochs, batch_size=32, lr=3e-3, weight_decay=5e-4)
    scopes = ("class:3", "random:0.1", "most-of-class:3")
    table: dict[str, dict[str, list[dict[str, float]]]] = {s: {} for s in scopes}
    for seed in range(args.seeds):
        ds = ul.load_dataset("shapes", seed=seed, n=args.n, n_val=args.n // 4, n_test=args.n // 4)
        t0 = time.perf_counter()
        original = ul.train_model(ARCH, ds, recipe=recipe, seed=seed, device="cpu")
        _log(f"seed {seed}: original in {time.perf_counter() - t0:.0f}s")
        for scope in scopes:
            ids = (
                _most_of_class(ds, seed)
                if scope.startswith("most-of-class")
                else forget_ids(ds, scope, seed)
            )
            data = ds.unlearn_data(ids)
            cache = ul.FeatureCache()
            rows: dict[str, dict[str, float]] = {"original": _metrics(original, data, seed)}
            for m in ["retrain", "retrain-2", *methods]:
                name, cfg_seed = ("retrain", seed + 1000) if m == "retrain-2" else (m, seed)
                res = ul.unlearn(
                    original, data, name, _config(name, cfg_seed, recipe, {}), cache=cache
                )
                rows[m] = {**_metrics(res.model, data, seed), "rte_s": res.elapsed_s}
                _log(
                    f"  seed {seed} {scope} {m}: "
                    + " ".join(f"{k} {rows[m][k]:.2f}" for k in (*GAP_KEYS, "rte_s"))
                )
            for m, row in rows.items():
                row["avg_gap"] = avg_gap(row, rows["retrain"])
                table[scope].setdefault(m, []).append(row)
    summary: dict[str, Any] = {}
    for scope, per in table.items():
        summary[scope] = {}
        for m, runs in per.items():
            summary[scope][m] = {
                k: (float(np.mean([r[k] for r in runs])), float(np.std([r[k] for r in runs])))
                for k in (*GAP_KEYS, "avg_gap", "rte_s")
                if all(k in r for r in runs)
            }
    return {"n_train": args.n, "epochs": args.epochs, "seeds": args.seeds, "scopes": summary}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmarks.torchvision_images")
    p.add_argument("mode", choices=("warmup", "erasure", "quality"))
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--sizes", default="5000,50000,200000")
    p.add_argument("--dir", default="/tmp/lethe-shapes")
    p.add_argument("--cache-dir", default="/tmp/lethe-shapes-cache")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--methods", default="lau,lau-calibrated,finetune")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    result = {"warmup": warmup, "erasure": erasure, "quality": quality}[args.mode](args)
    result.update(
        mode=args.mode,
        device=args.device,
        host=f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        load_avg_at_end=os.getloadavg(),
        wall_s=time.perf_counter() - t0,
    )
    text = json.dumps(
        result,
        indent=2,
        default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o),
    )
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
