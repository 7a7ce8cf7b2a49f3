"""Benchmark unlearning methods against retraining, in one process on one device, over seeds.

Examples:

    python -m unlearning.bench --regime mnist1d-hard --scenario random:0.1 --seeds 3
    python -m unlearning.bench --dataset digits --scenario class:3,random:0.1 \\
        --methods default,finetune,neggrad --seeds 5 --seed-offset 10 --json out.json

Protocol (UNLEARNING.md): per seed the dataset is drawn with that seed, the original model is
trained once (shared by every scenario of the run) and its activations are cached (as the
service does once per model); then, per scenario, every method runs on the same data and is
scored against ``retrain``: UA, RA, TA, MIA (an RBF SVC on true-label confidence, members =
retain, non-members = the **test** split, never the ``val`` split methods calibrate on),
probe_UA (a linear probe on the backbone, shown the forgotten classes' held-out samples),
Avg. Gap = mean |method - retrain| over UA/RA/TA/MIA. ``retrain-2`` (a second retrain with
another seed) gives the **noise floor**: its gap to the first retrain is what no method can be
told apart from. The target is Avg. Gap <= 1.5 x noise floor + 0.5; ``paired`` counts the
seeds on which ``default`` (what ``choose_method`` picks) has a lower gap than each baseline.
``original`` is the untouched model (doing nothing). ``rte_s`` is ``unlearn()`` wall time with
the warm cache; ``speedup_vs_retrain`` is retrain's time over the method's, per seed, averaged.

Scenarios (comma-separate several): ``random:F`` (a fraction F < 1 of the training set, or
F >= 1 samples), ``class:K`` (every training sample of class K), ``class:K+N`` (class K plus N
random samples of other classes), ``most:K:F+R`` (a share F of class K plus a share R of the
other training samples; ``+R`` optional), ``subjects:N`` (all samples of N subjects).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI's --help must not pay for importing torch
    import torch

    from .types import Dataset

__all__ = ["REGIMES", "forget_ids", "main", "merge", "run_benchmark", "run_suite"]

DEFAULT_ARCH = {
    "sklearn-digits": "digits-cnn",
    "mnist1d": "mnist1d-cnn",
    "synthetic-cifar": "resnet18-cifar",
    "digits-rgb32": "torchvision:resnet18",
}
DATASET_ALIASES = {"digits": "sklearn-digits", "sklearn_digits": "sklearn-digits"}
REGIMES: dict[str, dict[str, Any]] = {
    "mnist1d-default": {"dataset": "mnist1d", "params": {}, "train_epochs": None},
    # retrain gets ~11 % of a random forget set wrong here (like CIFAR-10's 5 %), not ~4 %
    "mnist1d-hard": {"dataset": "mnist1d", "params": {"num_samples": 3000}, "train_epochs": 10},
    "digits": {"dataset": "sklearn-digits", "params": {}, "train_epochs": None},
    # CIFAR-shaped (3x32x32) images with a real class structure, on torchvision's ResNet-18
    "images": {"dataset": "digits-rgb32", "params": {}, "train_epochs": None},
}
SUITE_SCENARIOS = (
    "class:7",
    "random:0.05",
    "random:0.1",
    "random:0.2",
    "subjects:20",
    "most:7:0.9+0.05",
    "class:7+5",
)
BASELINES = ("finetune", "neggrad", "random-label", "salun")
DEFAULT_METHODS = ("retrain", "retrain-2", "default", *BASELINES)
REPORTED = (
    "UA",
    "RA",
    "TA",
    "MIA",
    "probe_UA",
    "class_TA",
    "avg_gap",
    "rte_s",
    "speedup_vs_retrain",
)
SECOND_RETRAIN_SEED = 1000
"""``retrain-2`` uses the seed plus this: same recipe, another initialisation and order."""


def forget_ids(ds: Dataset, scenario: str, seed: int) -> list[str]:
    """The training-sample ids ``scenario`` forgets for ``seed`` (deterministic)."""
    import numpy as np

    kind, _, arg = scenario.partition(":")
    rng = np.random.default_rng(seed + 1)
    ids = ds.train.ids
    labels = ds.train.y.tolist()

    def others_random(k: int, n: int) -> list[int]:
        pool = [i for i, y in enumerate(labels) if y != k]
        return [pool[j] for j in rng.choice(len(pool), min(n, len(pool)), replace=False)]

    if kind == "random":
        f = float(arg)
        n = round(f * len(ids)) if f < 1 else int(f)
        return [ids[i] for i in sorted(rng.choice(len(ids), n, replace=False))]
    if kind == "class":
        cls, _, few = arg.partition("+")
        k = int(cls)
        rows = [i for i, y in enumerate(labels) if y == k]
        if few:
            rows += others_random(k, int(few))
        return [ids[i] for i in sorted(rows)]
    if kind == "most":
        cls, _, rest = arg.partition(":")
        share, _, others = rest.partition("+")
        k = int(cls)
        in_k = [i for i, y in enumerate(labels) if y == k]
        n_k = round(float(share) * len(in_k))
        rows = [in_k[j] for j in rng.choice(len(in_k), n_k, replace=False)]
        if others:
            rows += others_random(k, round(float(others) * (len(ids) - len(in_k))))
        return [ids[i] for i in sorted(rows)]
    if kind == "subjects":
        if ds.train.subjects is None:
            raise ValueError(f"dataset {ds.id!r} has no subject refs")
        subjects = sorted({s for s in ds.train.subjects if s is not None})
        chosen = set(rng.choice(subjects, int(arg), replace=False).tolist())
        return [i for i, s in zip(ids, ds.train.subjects, strict=True) if s in chosen]
    raise ValueError(
        f"unknown scenario {scenario!r}: use random:F, class:K, class:K+N, most:K:F+R or subjects:N"
    )


def _mean_std(values: Sequence[float | None]) -> tuple[float, float]:
    import numpy as np

    arr = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if len(arr) == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _config(method: str, seed: int, recipe: Any, overrides: dict[str, dict[str, Any]]) -> Any:
    from dataclasses import fields

    from .methods.registry import get_method

    spec = get_method(method)
    names = {f.name for f in fields(spec.config_cls)}
    cfg: dict[str, Any] = dict(overrides.get(method, {}))
    if "seed" in names:
        cfg.setdefault("seed", seed)
    if "recipe" in names:
        cfg.setdefault("recipe", recipe)
    return spec.make_config(cfg)


def run_suite(
    *,
    dataset: str,
    scenarios: Sequence[str],
    methods: Sequence[str] = DEFAULT_METHODS,
    seeds: int | Sequence[int] = 5,
    seed_offset: int = 0,
    device: str = "cpu",
    arch: str | None = None,
    dataset_params: dict[str, Any] | None = None,
    method_configs: dict[str, dict[str, Any]] | None = None,
    train_epochs: int | None = None,
    log: Callable[[str], None] = print,
    checkpoint: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """One result per scenario; each seed's original model is shared by all scenarios.

    ``methods`` may name ``default`` (``choose_method``'s pick per scenario) and
    ``retrain-2`` (the noise floor). ``seeds``: a count (starting at ``seed_offset``) or a list.
    ``checkpoint`` receives the results so far after every seed (a long run keeps what it
    measured).
    """
    from dataclasses import replace

    import torch

    from .cache import FeatureCache
    from .methods.registry import list_methods
    from .training import default_recipe, train_model

    dataset = DATASET_ALIASES.get(dataset, dataset)
    seed_list = (
        list(range(seed_offset, seed_offset + seeds)) if isinstance(seeds, int) else list(seeds)
    )
    arch = arch or DEFAULT_ARCH.get(dataset)
    if arch is None:
        raise ValueError(f"no default architecture for {dataset!r}; pass arch=")
    known = {*list_methods(), "default", "retrain-2"}
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
    per_scenario: dict[str, list[dict[str, dict[str, Any]]]] = {s: [] for s in scenarios}
    picked: dict[str, set[str]] = {s: set() for s in scenarios}
    for seed in seed_list:
        ds = _load(dataset, seed, dataset_params or {})
        clock = _clock()
        original = train_model(arch, ds, recipe=recipe, seed=seed, device=dev)
        train_s = _clock() - clock
        cache = FeatureCache()
        clock = _clock()
        cache.features(original, ds.train, ds.val, ds.test, device=dev)
        log(
            f"seed {seed}: original trained in {train_s:.1f}s, cache warmed in "
            f"{_clock() - clock:.2f}s"
        )
        for scenario in scenarios:
            rows, default = _run_scenario(
                ds,
                scenario,
                seed,
                original,
                cache,
                runnable,
                recipe,
                method_configs or {},
                dev,
                log,
            )
            picked[scenario].add(default)
            per_scenario[scenario].append(rows)
        if checkpoint is not None:
            done = seed_list[: len(per_scenario[scenarios[0]])]
            checkpoint(
                [
                    _summarise(dataset, s, done, per_scenario[s], picked[s], _device_name(dev))
                    for s in scenarios
                ]
            )
    return [
        _summarise(dataset, s, seed_list, per_scenario[s], picked[s], _device_name(dev))
        for s in scenarios
    ]


def _clock() -> float:
    import time

    return time.perf_counter()


def merge(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Results of separate runs (other seeds, same dataset and scenario) as one per scenario.

    A seed found in several runs is one row whose methods are the union of theirs, a later
    run's method replacing an earlier one's: rerunning ``retrain,default`` after a change to
    the default method updates those rows and keeps the baselines measured before (their
    code, seeds and retrain being the same; each row keeps its own gap and speed-up).
    """
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault((r["dataset"], r["scenario"]), []).append(r)
    out = []
    for (dataset, scenario), parts in groups.items():
        by_seed: dict[int, dict[str, Any]] = {}
        for p in parts:
            for seed, row in zip(p["seeds"], p["rows"], strict=True):
                before = by_seed.get(seed, {})
                if "retrain" in before and "retrain" in row:
                    _same_retrain(before["retrain"], row["retrain"], scenario, seed)
                by_seed[seed] = {**before, **row}
        seeds, rows = list(by_seed), list(by_seed.values())
        picked = sorted({m for p in parts for m in p.get("default_method", [])})
        out.append(_summarise(dataset, scenario, seeds, rows, picked, parts[0]["device"]))
    return out


def _same_retrain(a: dict[str, Any], b: dict[str, Any], scenario: str, seed: int) -> None:
    """Rows of one seed from two runs are merged only if their retrains agree (the gaps of
    either run are measured against it)."""
    for key in ("UA", "RA", "TA", "MIA"):
        if abs((a.get(key) or 0.0) - (b.get(key) or 0.0)) > 1e-6:
            raise ValueError(
                f"{scenario} seed {seed}: the runs' retrains differ ({key} {a.get(key)} vs "
                f"{b.get(key)}); their rows cannot be merged"
            )


_SCENARIO_LINE = re.compile(
    r"^  seed (\d+) (\S+): \d+ retain / \d+ forget \((\w+); default ([\w-]+)\)$"
)
_METHOD_LINE = re.compile(
    r"^\s+([\w-]+): UA\s+(\S+) RA\s+(\S+) TA\s+(\S+) MIA\s+(\S+) probe_UA\s+(\S+) "
    r"class_TA\s+(\S+)\s+(\S+)s$"
)


def results_from_log(text: str, dataset: str) -> list[dict[str, Any]]:
    """Results rebuilt from a run's log (what it printed per method), for a run stopped
    before it wrote its JSON: complete scenarios only (not the last one of a stopped run, and
    every method of the run logged), at the printed precision (2 decimals); ``original`` is
    not logged, so it is absent."""
    from .metrics import avg_gap

    found: list[tuple[int, str, str, dict[str, dict[str, Any]]]] = []
    for line in text.splitlines():
        head = _SCENARIO_LINE.match(line)
        if head:
            found.append((int(head[1]), head[2], head[4], {}))
            continue
        row = _METHOD_LINE.match(line)
        if row and found:
            keys = ("UA", "RA", "TA", "MIA", "probe_UA", "class_TA", "rte_s")
            values = [None if v == "-" else float(v) for v in row.groups()[1:]]
            found[-1][3][row[1]] = dict(zip(keys, values, strict=True))
    if not found:
        return []
    if "noise floor" not in text:  # the run stopped: its last scenario may lack methods
        found = found[:-1]
    if not found:
        return []
    expected = max(len(rows) for *_, rows in found)
    grouped: dict[str, list[tuple[int, str, dict[str, dict[str, Any]]]]] = {}
    for seed, scenario, default, rows in found:
        if len(rows) == expected and "retrain" in rows:
            ref = rows["retrain"]
            for r in rows.values():
                r["avg_gap"] = avg_gap(r, ref)
                r["speedup_vs_retrain"] = ref["rte_s"] / r["rte_s"] if r["rte_s"] else None
            grouped.setdefault(scenario, []).append((seed, default, rows))
    return [
        _summarise(
            dataset,
            scenario,
            [seed for seed, _, _ in runs],
            [rows for *_, rows in runs],
            sorted({d for _, d, _ in runs}),
            "cpu (from the run's log)",
        )
        for scenario, runs in grouped.items()
    ]


def _run_scenario(
    ds: Dataset,
    scenario: str,
    seed: int,
    original: Any,
    cache: Any,
    runnable: Sequence[str],
    recipe: Any,
    configs: dict[str, dict[str, Any]],
    dev: torch.device,
    log: Callable[[str], None],
) -> tuple[dict[str, dict[str, Any]], str]:
    from .engine import choose_method, unlearn
    from .metrics import avg_gap, evaluate

    data = ds.unlearn_data(forget_ids(ds, scenario, seed))
    default = choose_method(data)
    log(
        f"  seed {seed} {scenario}: {len(data.retain)} retain / {len(data.forget)} forget "
        f"({data.scope}; default {default})"
    )
    rows: dict[str, dict[str, Any]] = {
        "original": {**evaluate(original, data, dev, cache, seed=seed), "rte_s": 0.0}
    }
    for m in runnable:
        real = {"default": default, "retrain-2": "retrain"}.get(m, m)
        run_seed = seed + SECOND_RETRAIN_SEED if m == "retrain-2" else seed
        res = unlearn(
            original, data, real, _config(real, run_seed, recipe, configs), device=dev, cache=cache
        )
        met = evaluate(res.model, data, dev, cache, seed=seed)
        rows[m] = {**met, "rte_s": res.elapsed_s}
        log(
            f"    {m:>14}: UA {met['UA']:6.2f} RA {met['RA']:6.2f} TA {met['TA']:6.2f} "
            f"MIA {met['MIA']:6.2f} probe_UA {met['probe_UA']:6.2f} "
            f"class_TA {_num(met.get('class_TA'))} {res.elapsed_s:8.3f}s"
        )
    ref = rows["retrain"]
    for row in rows.values():
        row["avg_gap"] = avg_gap(row, ref)
        row["speedup_vs_retrain"] = ref["rte_s"] / row["rte_s"] if row["rte_s"] > 0 else None
    return rows, default


def _num(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:6.2f}"


def _summarise(
    dataset: str,
    scenario: str,
    seed_list: Sequence[int],
    per_seed: Sequence[dict[str, dict[str, Any]]],
    picked: set[str] | Sequence[str],
    device_name: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "scenario": scenario,
        "dataset": dataset,
        "device": device_name,
        "seeds": list(seed_list),
        "methods": {},
        "rows": _json_safe(list(per_seed)),
    }
    for m in [m for m in per_seed[0] if all(m in p for p in per_seed)]:
        entry: dict[str, Any] = {}
        std: dict[str, float] = {}
        for key in REPORTED:
            entry[key], std[key] = _mean_std([p[m].get(key) for p in per_seed])
        entry["std"] = std
        entry["per_seed_gap"] = [p[m]["avg_gap"] for p in per_seed]
        out["methods"][m] = entry
    if "retrain-2" in out["methods"]:
        noise = out["methods"]["retrain-2"]["avg_gap"]
        out["noise_floor"] = noise
        out["target_gap"] = 1.5 * noise + 0.5
    if "default" in out["methods"]:
        out["default_method"] = sorted(picked)
        mine = out["methods"]["default"]["per_seed_gap"]
        out["paired"] = {
            m: {
                "default_lower": sum(a < b for a, b in zip(mine, e["per_seed_gap"], strict=True)),
                "seeds": len(mine),
                "mean_diff": float(
                    sum(b - a for a, b in zip(mine, e["per_seed_gap"], strict=True)) / len(mine)
                ),
            }
            for m, e in out["methods"].items()
            if m not in ("default", "retrain")
        }
        if "target_gap" in out:
            out["target_met"] = bool(out["methods"]["default"]["avg_gap"] <= out["target_gap"])
    return _json_dict(out)


def run_benchmark(
    *,
    dataset: str,
    scenario: str,
    methods: Sequence[str],
    seeds: int | Sequence[int],
    seed_offset: int = 0,
    device: str = "cpu",
    arch: str | None = None,
    dataset_params: dict[str, Any] | None = None,
    method_configs: dict[str, dict[str, Any]] | None = None,
    train_epochs: int | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """One scenario (see ``run_suite``)."""
    (result,) = run_suite(
        dataset=dataset,
        scenarios=[scenario],
        methods=methods,
        seeds=seeds,
        seed_offset=seed_offset,
        device=device,
        arch=arch,
        dataset_params=dataset_params,
        method_configs=method_configs,
        train_epochs=train_epochs,
        log=log,
    )
    return result


def run_cost_growth(
    *,
    dataset: str,
    forget_sizes: Sequence[int],
    methods: Sequence[str],
    seeds: int | Sequence[int],
    seed_offset: int = 0,
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
    runs (the median resists other processes sharing the machine). Retrain (on the largest
    forget set) is timed once per seed as the reference when ``with_retrain``.
    """
    from dataclasses import replace

    import numpy as np
    import torch

    from .cache import FeatureCache
    from .engine import unlearn
    from .loop import predict
    from .methods.registry import list_methods
    from .training import default_recipe, train_model

    dataset = DATASET_ALIASES.get(dataset, dataset)
    seed_list = (
        list(range(seed_offset, seed_offset + seeds)) if isinstance(seeds, int) else list(seeds)
    )
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
        original = train_model(arch, ds, recipe=recipe, seed=seed, device=dev)
        cache = FeatureCache()
        cache.features(original, ds.train, ds.val, ds.test, device=dev)
        pred = predict(original, ds.test.x, dev).argmax(1).cpu()
        test_acc.append(float((pred == ds.test.y).float().mean() * 100))
        log(f"seed {seed}: {n_train} train samples, original test accuracy {test_acc[-1]:.2f}")
        for n in forget_sizes:
            data = ds.unlearn_data(forget_ids(ds, f"random:{n}", seed))
            for m in methods:
                for _ in range(repeats):
                    res = unlearn(
                        original, data, m, _config(m, seed, recipe, {}), device=dev, cache=cache
                    )
                    times[m][n].append(res.elapsed_s)
                    log(f"  seed {seed} forget {n:>6} {m:>14}: {res.elapsed_s:.4f}s")
        if with_retrain:
            data = ds.unlearn_data(forget_ids(ds, f"random:{max(forget_sizes)}", seed))
            res = unlearn(
                original, data, "retrain", _config("retrain", seed, recipe, {}), device=dev
            )
            retrain_s.append(res.elapsed_s)
            log(f"  seed {seed} retrain: {res.elapsed_s:.1f}s")
    return _json_dict(
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


def _json_dict(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_safe(v) for k, v in obj.items()}


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

    return load_dataset(DATASET_ALIASES.get(dataset, dataset), seed=seed, **params)


def _device_name(dev: torch.device) -> str:
    import platform

    import torch

    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def _fmt(mean: float | None, std: float | None, digits: int = 2) -> str:
    if mean is None or math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f} ± {std or 0.0:.{digits}f}"


def format_table(result: dict[str, Any]) -> str:
    """Markdown table of one scenario, with the noise floor, target and paired wins."""
    head = ["method", "UA", "RA", "TA", "MIA", "probe_UA", "class_TA", "Avg.Gap", "RTE s"]
    head += ["speedup", "default lower (seeds)"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    paired = result.get("paired", {})
    for m, e in result["methods"].items():
        s = e["std"]
        keys = ("UA", "RA", "TA", "MIA", "probe_UA", "class_TA", "avg_gap")
        p = paired.get(m)
        cells = [
            m,
            *(_fmt(e[k], s[k]) for k in keys),
            _fmt(e["rte_s"], s["rte_s"], 3),
            _fmt(e["speedup_vs_retrain"], s["speedup_vs_retrain"], 0),
            f"{p['default_lower']}/{p['seeds']}" if p else "",
        ]
        lines.append(" | ".join(cells))
    if "noise_floor" in result:
        lines.append("")
        line = (
            f"noise floor (retrain-2 vs retrain) {result['noise_floor']:.2f}; target Avg. Gap "
            f"<= {result['target_gap']:.2f}"
        )
        if "default" in result["methods"]:
            gap = result["methods"]["default"]["avg_gap"]
            verdict = "met" if result.get("target_met") else "MISSED"
            line += f"; default ({', '.join(result['default_method'])}) {gap:.2f}: {verdict}"
        lines.append(line)
    else:
        lines += [
            "",
            "noise floor not measured (add retrain-2 to --methods, or --render this run "
            "together with one that measured it): no target can be judged",
        ]
    return "\n".join(lines)


def format_headline(results: Sequence[dict[str, Any]]) -> str:
    """One row per scenario: the default method against retrain, the noise floor and target,
    paired wins against each baseline, speed-up."""
    head = ["scenario", "seeds", "default", "Avg. Gap", "noise floor", "target", "met"]
    head += [f"< {b}" for b in BASELINES] + ["< original", "speed-up"]
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for r in results:
        e = r["methods"].get("default")
        if e is None:
            continue
        paired = r.get("paired", {})
        measured = "noise_floor" in r  # a speed pass (retrain,default) has none: no target

        def wins(m: str, paired: dict[str, Any] = paired) -> str:
            p = paired.get(m)
            return f"{p['default_lower']}/{p['seeds']}" if p else "-"

        cells = [
            r["scenario"],
            str(len(r["seeds"])),
            ", ".join(r.get("default_method", [])),
            _fmt(e["avg_gap"], e["std"]["avg_gap"]),
            _fmt(r["noise_floor"], r["methods"]["retrain-2"]["std"]["avg_gap"])
            if measured
            else "not measured",
            f"{r['target_gap']:.2f}" if measured else "-",
            ("yes" if r.get("target_met") else "**no**") if measured else "-",
            *(wins(b) for b in BASELINES),
            wins("original"),
            _fmt(e["speedup_vs_retrain"], e["std"]["speedup_vs_retrain"], 0) + "×",
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
    p = argparse.ArgumentParser(
        prog="lethe bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--regime",
        choices=sorted(REGIMES),
        default=None,
        help="preset dataset, size and training epochs (overrides --dataset, "
        "--dataset-param and --train-epochs): "
        + "; ".join(
            f"{k}: {v['dataset']} {v['params'] or ''} epochs {v['train_epochs'] or 'recipe'}"
            for k, v in REGIMES.items()
        ),
    )
    p.add_argument(
        "--dataset",
        default="mnist1d",
        help="dataset id: mnist1d, sklearn-digits (alias digits), digits-rgb32, shapes, "
        "synthetic-cifar, npz",
    )
    p.add_argument(
        "--scenario",
        "--scenarios",
        dest="scenario",
        default="random:0.1",
        help="comma-separated scenarios (see above), or 'suite' for: " + ",".join(SUITE_SCENARIOS),
    )
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help="comma-separated; 'default' = choose_method's pick, 'retrain-2' = the noise "
        "floor's second retrain (default: %(default)s)",
    )
    p.add_argument("--seeds", type=int, default=5, help="number of seeds (default: %(default)s)")
    p.add_argument(
        "--seed-offset",
        "--start-seed",
        dest="seed_offset",
        type=int,
        default=0,
        help="first seed; seeds run from here (default: %(default)s)",
    )
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.add_argument("--arch", default=None, help="architecture id (default: the dataset's)")
    p.add_argument("--json", default=None, help="write the result (a list per scenario) here")
    p.add_argument(
        "--dataset-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="dataset parameter, e.g. num_samples=3000 (repeatable)",
    )
    p.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="METHOD:KEY=VALUE",
        help="method config override, e.g. lau-calibrated:cut=2 (repeatable)",
    )
    p.add_argument(
        "--train-epochs",
        type=int,
        default=None,
        help="override the recipe's epochs for the original AND retrain",
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
        "--render",
        default=None,
        metavar="FILE[,FILE...]",
        help="print the tables of saved --json results and exit (results of the same dataset "
        "and scenario from several files, e.g. other seeds, are merged); a run's log "
        "(DATASET=run.log) is read back too, its complete scenarios only",
    )
    p.add_argument(
        "--headline",
        action="store_true",
        help="with --render: one summary row per scenario instead of the full tables",
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
    if args.render:
        saved: list[dict[str, Any]] = []
        for item in args.render.split(","):
            label, _, path = item.rpartition("=")
            with open(path) as f:
                if path.endswith(".log"):
                    saved += results_from_log(f.read(), label or path)
                    continue
                loaded = json.load(f)
            saved += loaded if isinstance(loaded, list) else [loaded]
        merged = merge(saved)
        if args.headline:
            print(format_headline(merged))
            return 0
        for result in merged:
            print(f"\n{result['dataset']} {result['scenario']}, seeds {result['seeds']}")
            print(format_table(result))
        return 0
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset, params, epochs = args.dataset, _parse_kv(args.dataset_param), args.train_epochs
    if args.regime:
        preset = REGIMES[args.regime]
        dataset, params, epochs = preset["dataset"], dict(preset["params"]), preset["train_epochs"]
    dataset = DATASET_ALIASES.get(dataset, dataset)
    configs: dict[str, dict[str, Any]] = {}
    for item in args.config:
        method, _, kv = item.partition(":")
        configs.setdefault(method, {}).update(_parse_kv([kv]))
    log = lambda s: print(s, flush=True)  # noqa: E731
    if args.forget_sizes:
        growth = run_cost_growth(
            dataset=dataset,
            forget_sizes=[int(n) for n in args.forget_sizes.split(",")],
            methods=args.methods.split(","),
            seeds=args.seeds,
            seed_offset=args.seed_offset,
            device=args.device,
            arch=args.arch,
            dataset_params=params,
            train_epochs=epochs,
            with_retrain=not args.no_retrain,
            repeats=args.repeats,
            log=log,
        )
        print(json.dumps(growth, indent=2))
        if args.json:
            with open(args.json, "w") as f:
                json.dump(growth, f, indent=2)
        return 0
    scenarios = SUITE_SCENARIOS if args.scenario == "suite" else args.scenario.split(",")
    results = run_suite(
        dataset=dataset,
        scenarios=scenarios,
        methods=args.methods.split(","),
        seeds=args.seeds,
        seed_offset=args.seed_offset,
        device=args.device,
        arch=args.arch,
        dataset_params=params,
        method_configs=configs,
        train_epochs=epochs,
        log=log,
        checkpoint=(lambda partial: _write(args.json, partial)) if args.json else None,
    )
    for result in results:
        print(
            f"\n{args.regime or dataset} {result['scenario']}, seeds {result['seeds']}, "
            f"{result['device']}, torch {torch.__version__}"
        )
        print(format_table(result))
    if args.json:
        _write(args.json, results)
    return 0


def _write(path: str, results: list[dict[str, Any]]) -> None:
    with open(path, "w") as f:
        json.dump(results if len(results) > 1 else results[0], f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
