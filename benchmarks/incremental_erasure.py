"""Two successive erasures (what the service does since issue 14: each job forgets only the
new samples, on top of the version that already forgot the earlier ones) against one
cumulative erasure of both sets and against retraining without both, on the same seeds.

    nice -n 15 python -m benchmarks.incremental_erasure --seeds 3 --json out.json

Per seed: the dataset and the original model as in ``unlearning.bench``; scenario
``A then B``: ``first`` then ``second`` (disjoint). ``incremental``: the default method
on ``first`` from the original, then the default method on ``second`` from that result
(``workers.pipeline.incremental_data``: ``first`` in neither retain nor forget);
``cumulative``: the default method on ``first ∪ second`` from the original; ``retrain``:
trained from scratch on the rest. All three are scored on the cumulative split (forget =
``first ∪ second``): UA, RA, TA, MIA and Avg. Gap to retrain (``unlearning.metrics``).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

SCENARIOS = {
    "random 5% then random 5%": ("random:0.05", "random:0.05"),
    "class 3 then random 5%": ("class:3", "random:0.05"),
}
KEYS = ("UA", "RA", "TA", "MIA", "avg_gap")


def _row(row: dict[str, float]) -> str:
    return " ".join(f"{x} {row[x]:6.2f}" for x in KEYS)


def _mean_std(values: list[float]) -> list[float]:
    import numpy as np

    return [float(np.mean(values)), float(np.std(values))]


def run(seeds: list[int], device: str = "cpu") -> dict[str, Any]:
    import torch

    from unlearning import bench
    from unlearning.cache import FeatureCache
    from unlearning.engine import choose_method, unlearn
    from unlearning.metrics import avg_gap, evaluate
    from unlearning.training import default_recipe, train_model
    from workers.pipeline import incremental_data

    dev = torch.device(device)
    arch = bench.DEFAULT_ARCH["sklearn-digits"]
    recipe = default_recipe(arch)
    out: dict[str, Any] = {}
    for name, (a, b) in SCENARIOS.items():
        rows: dict[str, list[dict[str, float]]] = {
            "incremental": [],
            "cumulative": [],
            "retrain": [],
        }
        methods: set[str] = set()
        for seed in seeds:
            ds = bench._load("digits", seed, {})
            original = train_model(arch, ds, recipe=recipe, seed=seed, device=dev)
            cache = FeatureCache()
            first = bench.forget_ids(ds, a, seed)
            second = [i for i in bench.forget_ids(ds, b, seed + 100) if i not in set(first)]
            both = ds.unlearn_data(first + second)

            def default(model: Any, data: Any, seed: int = seed, cache: Any = cache) -> Any:
                m = choose_method(data)
                methods.add(m)  # noqa: B023 (one set for the scenario, on purpose)
                cfg = bench._config(m, seed, recipe, {})
                return unlearn(model, data, m, cfg, device=dev, cache=cache).model

            step1 = default(original, ds.unlearn_data(first))
            step2 = default(step1, incremental_data(ds, erased_before=first, new=second))
            models = {
                "incremental": step2,
                "cumulative": default(original, both),
                "retrain": unlearn(
                    original,
                    both,
                    "retrain",
                    bench._config("retrain", seed, recipe, {}),
                    device=dev,
                    cache=cache,
                ).model,
            }
            scored = {k: evaluate(m, both, dev, cache, seed=seed) for k, m in models.items()}
            for k, met in scored.items():
                row = {key: float(met[key]) for key in ("UA", "RA", "TA", "MIA")}  # type: ignore[arg-type]
                row["avg_gap"] = avg_gap(row, scored["retrain"])  # type: ignore[arg-type]
                rows[k].append(row)
                print(f"{name} seed {seed} {k:>12}: {_row(row)}", flush=True)
        out[name] = {
            "methods": sorted(methods),
            "forget": {"first": len(first), "second": len(second)},
            **{k: {key: _mean_std([r[key] for r in v]) for key in KEYS} for k, v in rows.items()},
            "per_seed": rows,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-offset", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json")
    args = parser.parse_args()
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    result = run(seeds, args.device)
    for name, res in result.items():
        print(f"\n{name} ({res['forget']}, default: {res['methods']})")
        for k in ("incremental", "cumulative", "retrain"):
            print(
                f"  {k:>12}: "
                + " ".join(f"{x} {res[k][x][0]:.2f}±{res[k][x][1]:.2f}" for x in KEYS)
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seeds": seeds, "device": args.device, "results": result}, f, indent=2)


if __name__ == "__main__":
    main()
