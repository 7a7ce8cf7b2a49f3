"""The issue-12 GPU check, engine only, prepared for a CUDA machine (none was lent when it
was written). About 5-8 minutes on one H100/H200-class GPU with 16 CPU cores:

    PYTHONPATH=. python -m benchmarks.gpu_torchvision --out /tmp/gpu12 --json gpu12.json

1. renders 50,000 CIFAR-shaped PNGs of the generated shapes set (45,000 train, 2,500 val,
   2,500 test) into an ImageFolder with a process pool;
2. warm-up throughput: ``FeatureCache`` over those files (DataLoader workers, pinned memory,
   bf16 autocast) vs a bare DataLoader + ``model.eval()`` forward loop, same run;
3. trains ``torchvision:resnet18`` for ``--epochs`` measured epochs (SGD, the 182-epoch
   recipe's settings) and estimates a 182-epoch retrain from the measured epoch time
   (labelled as an estimate);
4. times ``lau`` (class scope) and ``lau-calibrated`` (random 10%) on the warm cache.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

import unlearning as ul
from unlearning import shapes, sources
from unlearning.bench import forget_ids
from unlearning.preprocess import Preprocess
from unlearning.training import TrainRecipe

PRE = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


def _render(args: tuple[str, int, int]) -> tuple[int, int]:
    root, lo, hi = args
    out = []
    for i in range(lo, hi):
        image, label = shapes.render(i, 0)
        image.save(f"{root}/{shapes.CLASSES[label]}/shape-{i:07d}.png", compress_level=1)
        out.append(label)
    return lo, len(out)


def _write(root: Path, n: int, procs: int) -> sources.Rows:
    for name in shapes.CLASSES:
        (root / name).mkdir(parents=True, exist_ok=True)
    chunks = [(str(root), lo, min(lo + 1000, n)) for lo in range(0, n, 1000)]
    with ProcessPoolExecutor(procs) as pool:
        list(pool.map(_render, chunks))
    recs = []
    for rec in shapes.records(n - 5000, 2500, 2500):
        _, label = shapes.render(rec["index"], 0, size=4)  # label only (cheap)
        recs.append({**rec, "label": label})
    return sources.Rows.from_records(recs)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default=tempfile.mkdtemp())
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--json", default="gpu12.json")
    p.add_argument(
        "--device",
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="cuda for the figures; cpu only to check the script on a small --n",
    )
    args = p.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    torch.backends.cudnn.benchmark = True

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    root = Path(args.out) / "shapes"
    t0 = time.perf_counter()
    rows = _write(root, args.n, os.cpu_count() or 4)
    result: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(dev) if cuda else "none (CPU check run)",
        "render_s": time.perf_counter() - t0,
    }
    ds = sources.reference_dataset(
        rows,
        sources.LocalLocation(root),
        "image-folder",
        PRE,
        num_classes=10,
        batch_size=512,
        num_workers=args.workers,
    )
    model = ul.get_architecture("torchvision:resnet18", num_classes=10).to(dev).eval()
    lower, _ = model.split(1)
    # warm-up vs bare loop (twice each, alternating; best of two)
    bare, warm = [], []
    for rep in range(2):
        t0 = time.perf_counter()
        loader = sources.loader(
            ds.train.source, ds.train.rows, batch_size=512, workers=args.workers, device=dev
        )  # type: ignore[arg-type]
        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=cuda):
            for x in loader:
                lower(x.to(dev, non_blocking=True))
        sync()
        bare.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cache = ul.FeatureCache(
            Path(args.out) / f"cache{rep}", batch_size=512, workers=args.workers
        )
        cache.features(model, ds.train, device=dev)
        sync()
        warm.append(time.perf_counter() - t0)
    result["warmup"] = {
        "bare_s": bare,
        "cache_s": warm,
        "ratio": min(bare) / min(warm),
        "rows": len(ds.train),
    }
    # measured training epochs (in-memory tensors, as retrain sees them)
    x_train = ds.train.x  # materialised once through the DataLoader
    train = ul.Split(x_train, ds.train.y, ds.train.ids, ds.train.subjects)
    full = ul.Dataset("shapes-50k", 10, (3, 32, 32), train, ds.val, ds.test)
    recipe = TrainRecipe(
        epochs=args.epochs, lr=0.1, batch_size=256, weight_decay=5e-4, optimizer="sgd"
    )
    sync()
    t0 = time.perf_counter()
    original = ul.train_model("torchvision:resnet18", full, recipe=recipe, seed=0, device=dev)
    sync()
    epoch_s = (time.perf_counter() - t0) / args.epochs
    result["train"] = {
        "measured_epochs": args.epochs,
        "epoch_s": epoch_s,
        "retrain_182_estimate_s": 182 * epoch_s,
    }
    cache = ul.FeatureCache(Path(args.out) / "cache-trained", batch_size=512, workers=args.workers)
    cache.features(original, full.train, full.val, full.test, device=dev)
    for scenario, method in (("class:3", "lau"), ("random:0.1", "lau-calibrated")):
        data = full.unlearn_data(forget_ids(full, scenario, 0))
        try:
            res = ul.unlearn(original, data, method, device=dev, cache=cache)
        except ul.NoChangeError as exc:  # e.g. a model too briefly trained to know the class
            result[f"{method} {scenario}"] = {"forget": len(data.forget), "error": str(exc)}
            continue
        result[f"{method} {scenario}"] = {
            "forget": len(data.forget),
            "s": res.elapsed_s,
            "speedup_vs_182_epoch_retrain_estimate": 182 * epoch_s / res.elapsed_s,
        }
    text = json.dumps(result, indent=2)
    print(text)
    Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
