"""Benchmark: every method, retrain included, in one process on one device, over seeds.

    python -m unlearning.bench --dataset mnist1d --scenario random:0.1 \
        --methods retrain,finetune,neggrad,lau,lau-calibrated --seeds 5 --device cpu --json out.json

Scenarios: ``random:F`` (a fraction F < 1 of the training set, or F >= 1 samples),
``class:K`` (every training sample of class K), ``subjects:N`` (all samples of N subjects).
Per seed: load the dataset with that seed, train the original, warm a feature cache with its
activations (as the service does once per model), then run each method on the same data and
evaluate it. ``original`` (the untouched model) is reported as the do-nothing reference.
``rte_s`` is each method's wall time as measured by ``unlearn``; ``speedup_vs_retrain`` is
retrain's time over the method's, per seed, then averaged.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import fields, replace
from typing import Any

import numpy as np
import torch

from .architectures import SplitModel
from .cache import FeatureCache
from .engine import unlearn
from .loop import predict
from .methods.registry import get_method, list_methods
from .metrics import GAP_KEYS, avg_gap, evaluate
from .training import default_recipe, train_model
from .types import Dataset, UnlearnData

__all__ = ["forget_ids", "main", "run_benchmark"]

DEFAULT_ARCH = {
    "sklearn-digits": "digits-cnn",
    "mnist1d": "mnist1d-cnn",
    "synthetic-cifar": "resnet18-cifar",
}
REPORTED = ("UA", "RA", "TA", "MIA", "probe_UA", "avg_gap", "rte_s", "speedup_vs_retrain")


def forget_ids(ds: Dataset, scenario: str, seed: int) -> list[str]:
    kind, _, arg = scenario.partition(":")
    rng = np.random.default_rng(seed + 1)
    ids = ds.train.ids
    if kind == "random":
        f = float(arg)
        n = round(f * len(ids)) if f < 1 else int(f)
        return [ids[i] for i in sorted(rng.choice(len(ids), n, replace=False))]
    if kind == "class":
        k = int(arg)
        return [i for i, y in zip(ids, ds.train.y.tolist(), strict=True) if y == k]
    if kind == "subjects":
        if ds.train.subjects is None:
            raise ValueError(f"dataset {ds.id!r} has no subject refs")
        subjects = sorted({s for s in ds.train.subjects if s is not None})
        chosen = set(rng.choice(subjects, int(arg), replace=False).tolist())
        return [i for i, s in zip(ids, ds.train.subjects, strict=True) if s in chosen]
    raise ValueError(f"unknown scenario {scenario!r}: use random:F, class:K or subjects:N")


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=float)
    if len(arr) == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _config(method: str, seed: int, recipe: Any, overrides: dict[str, dict[str, Any]]) -> Any:
    spec = get_method(method)
    names = {f.name for f in fields(spec.config_cls)}
    cfg: dict[str, Any] = dict(overrides.get(method, {}))
    if "seed" in names:
        cfg.setdefault("seed", seed)
    if "recipe" in names:
        cfg.setdefault("recipe", recipe)
    return spec.make_config(cfg)


def run_benchmark(
    *,
    dataset: str,
    scenario: str,
    methods: Sequence[str],
    seeds: int | Sequence[int],
    device: str = "cpu",
    arch: str | None = None,
    dataset_params: dict[str, Any] | None = None,
    method_configs: dict[str, dict[str, Any]] | None = None,
    train_epochs: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the benchmark and return the result in the issue-3 JSON shape."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    arch = arch or DEFAULT_ARCH.get(dataset)
    if arch is None:
        raise ValueError(f"no default architecture for {dataset!r}; pass arch=")
    known = set(list_methods())
    runnable = [m for m in methods if m in known]
    for m in methods:
        if m not in known:
            log(f"! method {m!r} is not registered; skipped (known: {sorted(known)})")
    if "retrain" not in runnable:
        runnable.insert(0, "retrain")
        log("! retrain added: the gaps are measured against it")
    dev = torch.device(device)
    recipe = default_recipe(arch)
    if train_epochs is not None:
        recipe = replace(recipe, epochs=train_epochs)
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in ["original", *runnable]}
    for seed in seed_list:
        ds = _load(dataset, seed, dataset_params or {})
        data: UnlearnData = ds.unlearn_data(forget_ids(ds, scenario, seed))
        t0 = time.perf_counter()
        original = train_model(arch, ds, recipe=recipe, seed=seed, device=dev)
        train_s = time.perf_counter() - t0
        cache = FeatureCache()
        t0 = time.perf_counter()
        cache.features(original, ds.train, ds.val, ds.test, device=dev)
        warm_s = time.perf_counter() - t0
        log(
            f"seed {seed}: {len(data.retain)} retain / {len(data.forget)} forget "
            f"({data.scope}); original trained in {train_s:.1f}s, cache warmed in {warm_s:.2f}s"
        )
        per_seed: dict[str, dict[str, Any]] = {
            "original": {**evaluate(original, data, dev, cache, seed=seed), "rte_s": 0.0}
        }
        for m in runnable:
            res = unlearn(
                original,
                data,
                m,
                _config(m, seed, recipe, method_configs or {}),
                device=dev,
                cache=cache,
            )
            assert isinstance(res.model, SplitModel)
            met = evaluate(res.model, data, dev, cache, seed=seed)
            per_seed[m] = {**met, "rte_s": res.elapsed_s}
            log(
                f"  seed {seed} {m:>14}: UA {met['UA']:6.2f} RA {met['RA']:6.2f} "
                f"TA {met['TA']:6.2f} MIA {met['MIA']:6.2f} probe_UA {met['probe_UA']:6.2f} "
                f"{res.elapsed_s:8.3f}s"
            )
        ref = per_seed["retrain"]
        for m, row in per_seed.items():
            row["avg_gap"] = avg_gap(row, ref)
            row["speedup_vs_retrain"] = (
                ref["rte_s"] / row["rte_s"] if row["rte_s"] > 0 else float("nan")
            )
            rows[m].append(row)
    out: dict[str, Any] = {
        "scenario": scenario,
        "dataset": dataset,
        "device": _device_name(dev),
        "seeds": seed_list,
        "methods": {},
    }
    for m, per in rows.items():
        entry: dict[str, Any] = {}
        std: dict[str, float] = {}
        for key in REPORTED:
            entry[key], std[key] = _mean_std([p[key] for p in per])
        entry["std"] = std
        out["methods"][m] = entry
    return _json_safe(out)


def run_cost_growth(
    *,
    dataset: str,
    forget_sizes: Sequence[int],
    methods: Sequence[str],
    seeds: int | Sequence[int],
    device: str = "cpu",
    arch: str | None = None,
    dataset_params: dict[str, Any] | None = None,
    train_epochs: int | None = None,
    with_retrain: bool = True,
    repeats: int = 1,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Unlearning wall time (warm cache) vs the number of random forget samples.

    Each method runs ``repeats`` times per size and seed; mean, std and median are over all
    runs (the median resists other processes sharing the machine).

    One original per seed; each method runs once per forget size. Retrain (on the largest
    forget set) is timed once per seed as the reference when ``with_retrain``.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    arch = arch or DEFAULT_ARCH[dataset]
    methods = [m for m in methods if m in set(list_methods())]
    dev = torch.device(device)
    recipe = default_recipe(arch)
    if train_epochs is not None:
        recipe = replace(recipe, epochs=train_epochs)
    times: dict[str, dict[int, list[float]]] = {m: {n: [] for n in forget_sizes} for m in methods}
    retrain_s: list[float] = []
    test_acc: list[float] = []
    n_train = 0
    for seed in seed_list:
        ds = _load(dataset, seed, dataset_params or {})
        n_train = len(ds.train)
        t0 = time.perf_counter()
        original = train_model(arch, ds, recipe=recipe, seed=seed, device=dev)
        log(
            f"seed {seed}: {n_train} train samples, original trained in "
            f"{time.perf_counter() - t0:.1f}s"
        )
        cache = FeatureCache()
        cache.features(original, ds.train, ds.val, ds.test, device=dev)
        test_acc.append(
            float(
                (predict(original, ds.test.x, dev).argmax(1).cpu() == ds.test.y).float().mean()
                * 100
            )
        )
        log(f"  seed {seed}: original test accuracy {test_acc[-1]:.2f}")
        for n in forget_sizes:
            data = ds.unlearn_data(forget_ids(ds, f"random:{n}", seed))
            for m in methods:
                for _ in range(repeats):
                    res = unlearn(
                        original, data, m, _config(m, seed, recipe, {}), device=dev, cache=cache
                    )
                    times[m][n].append(res.elapsed_s)
                    log(
                        f"  seed {seed} forget {n:>6} {m:>14}: {res.elapsed_s:.4f}s "
                        f"(epochs {res.info.get('epochs', '-')})"
                    )
        if with_retrain:
            data = ds.unlearn_data(forget_ids(ds, f"random:{max(forget_sizes)}", seed))
            res = unlearn(
                original, data, "retrain", _config("retrain", seed, recipe, {}), device=dev
            )
            retrain_s.append(res.elapsed_s)
            log(f"  seed {seed} retrain: {res.elapsed_s:.1f}s")
    return _json_safe(
        {
            "dataset": dataset,
            "train_samples": n_train,
            "device": _device_name(dev),
            "seeds": seed_list,
            "train_epochs": recipe.epochs,
            "repeats": repeats,
            "original_test_acc": dict(zip(("mean", "std"), _mean_std(test_acc), strict=True)),
            "rte_s": {
                m: {
                    str(n): {
                        **dict(zip(("mean", "std"), _mean_std(v), strict=True)),
                        "median": float(np.median(v)),
                    }
                    for n, v in per.items()
                }
                for m, per in times.items()
            },
            "retrain_s": dict(zip(("mean", "std"), _mean_std(retrain_s), strict=True))
            if retrain_s
            else None,
        }
    )


def _json_safe(obj: Any) -> Any:
    """NaN (e.g. the original's speedup) becomes null: JSON has no NaN."""
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return obj


def _load(dataset: str, seed: int, params: dict[str, Any]) -> Dataset:
    from .datasets import load_dataset

    return load_dataset(dataset, seed=seed, **params)


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _fmt(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None or math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std or 0.0:.{digits}f}"


def format_table(result: dict[str, Any]) -> str:
    head = ["method", *GAP_KEYS, "probe_UA", "Avg.Gap", "RTE s", "speedup"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for m, e in result["methods"].items():
        s = e["std"]
        cells = [
            m,
            *(_fmt(e[k], s[k]) for k in (*GAP_KEYS, "probe_UA", "avg_gap")),
            _fmt(e["rte_s"], s["rte_s"], 3),
            _fmt(e["speedup_vs_retrain"], s["speedup_vs_retrain"], 0),
        ]
        lines.append(" | ".join(cells))
    return "\n".join(lines)


def _parse_kv(items: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lethe bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--scenario", default="random:0.1")
    p.add_argument("--methods", default="retrain,finetune,neggrad,lau,lau-calibrated")
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--arch", default=None)
    p.add_argument("--json", default=None, help="write the result here")
    p.add_argument(
        "--dataset-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="e.g. num_samples=50000 (repeatable)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="METHOD:KEY=VALUE",
        help="method config override, e.g. lau:eps=2.0 (repeatable)",
    )
    p.add_argument(
        "--train-epochs",
        type=int,
        default=None,
        help="override the recipe's epochs for the original AND retrain",
    )
    p.add_argument(
        "--extrapolate-epochs",
        type=int,
        default=None,
        help="with --train-epochs: also print retrain time extrapolated to this many epochs",
    )
    p.add_argument(
        "--forget-sizes",
        default=None,
        metavar="N,N,...",
        help="cost-growth mode: time --methods for these random forget-set sizes",
    )
    p.add_argument("--repeats", type=int, default=1, help="cost-growth mode: runs per size")
    p.add_argument(
        "--no-retrain", action="store_true", help="cost-growth mode: do not time retrain"
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads on CPU (1 is fastest on a shared 2-core box)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    configs: dict[str, dict[str, Any]] = {}
    for item in args.config:
        method, _, kv = item.partition(":")
        configs.setdefault(method, {}).update(_parse_kv([kv]))
    if args.forget_sizes:
        growth = run_cost_growth(
            dataset=args.dataset,
            forget_sizes=[int(n) for n in args.forget_sizes.split(",")],
            methods=args.methods.split(","),
            seeds=args.seeds,
            device=args.device,
            arch=args.arch,
            dataset_params=_parse_kv(args.dataset_param),
            train_epochs=args.train_epochs,
            with_retrain=not args.no_retrain,
            repeats=args.repeats,
            log=lambda s: print(s, flush=True),
        )
        print(json.dumps(growth, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(growth, f, indent=2)
        return 0
    result = run_benchmark(
        dataset=args.dataset,
        scenario=args.scenario,
        methods=args.methods.split(","),
        seeds=args.seeds,
        device=args.device,
        arch=args.arch,
        dataset_params=_parse_kv(args.dataset_param),
        method_configs=configs,
        train_epochs=args.train_epochs,
        log=lambda s: print(s, flush=True),
    )
    print(
        f"\n{args.dataset} {args.scenario}, {len(result['seeds'])} seeds, {result['device']}, "
        f"torch {torch.__version__}"
    )
    print(format_table(result))
    if args.extrapolate_epochs and args.train_epochs:
        rt = result["methods"]["retrain"]["rte_s"]
        full = rt / args.train_epochs * args.extrapolate_epochs
        print(
            f"EXTRAPOLATED (not measured): retrain at {args.extrapolate_epochs} epochs ~ "
            f"{full:.1f}s (measured {rt:.2f}s for {args.train_epochs} epochs, linear in epochs)"
        )
        for m, e in result["methods"].items():
            if e["rte_s"]:
                print(
                    f"  {m}: extrapolated speed-up vs a {args.extrapolate_epochs}-epoch retrain "
                    f"~ {full / e['rte_s']:.0f}x"
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
