from __future__ import annotations

import json

import pytest

import unlearning as ul
from unlearning.bench import forget_ids, main, results_from_log


def test_scenarios_pick_the_right_samples(digits: ul.Dataset) -> None:
    assert len(forget_ids(digits, "random:0.1", 0)) == round(0.1 * len(digits.train))
    assert len(forget_ids(digits, "random:7", 0)) == 7
    assert forget_ids(digits, "random:7", 0) == forget_ids(digits, "random:7", 0)
    cls = forget_ids(digits, "class:3", 0)
    assert digits.unlearn_data(cls).scope == "class"
    subj = forget_ids(digits, "subjects:2", 0)
    assert digits.train.subjects is not None
    chosen = {digits.train.subjects[digits.train.ids.index(i)] for i in subj}
    assert len(chosen) == 2


def test_mixed_and_most_of_a_class_scenarios(digits: ul.Dataset) -> None:
    few = digits.unlearn_data(forget_ids(digits, "class:3+5", 0))
    assert few.scope == "mixed" and few.forgotten_classes == (3,)
    assert int((few.forget.y != 3).sum()) == 5
    most = digits.unlearn_data(forget_ids(digits, "most:3:0.9+0.05", 0))
    in_class = int((digits.train.y == 3).sum())
    assert most.scope == "sample"
    assert int((most.forget.y == 3).sum()) == round(0.9 * in_class)
    assert int((most.forget.y != 3).sum()) == round(0.05 * (len(digits.train) - in_class))


def test_benchmark_reports_noise_floor_and_paired_seeds(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out.json"
    main(
        [
            "--dataset",
            "digits",  # alias of sklearn-digits
            "--scenario",
            "class:3",
            "--methods",
            "retrain,retrain-2,default,finetune,nope",
            "--seeds",
            "2",
            "--seed-offset",
            "10",
            "--train-epochs",
            "2",
            "--config",
            "finetune:epochs=1",
            "--json",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert result["dataset"] == "sklearn-digits" and result["seeds"] == [10, 11]
    assert set(result["methods"]) == {"original", "retrain", "retrain-2", "default", "finetune"}
    assert result["default_method"] == ["lau"]
    noise = result["methods"]["retrain-2"]["avg_gap"]
    assert result["noise_floor"] == noise and noise > 0.0
    assert result["target_gap"] == 1.5 * noise + 0.5
    assert result["methods"]["retrain"]["avg_gap"] == 0.0
    assert set(result["paired"]) == {"original", "retrain-2", "finetune"}
    pair = result["paired"]["finetune"]
    mine, theirs = (result["methods"][m]["per_seed_gap"] for m in ("default", "finetune"))
    assert pair["seeds"] == 2
    assert pair["default_lower"] == sum(a < b for a, b in zip(mine, theirs, strict=True))
    printed = capsys.readouterr().out
    assert "not registered" in printed and "noise floor" in printed


def test_help_describes_the_protocol(capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for needle in ("--seed-offset", "noise floor", "test", "most:K:F+R", "--regime"):
        assert needle in text


def test_a_stopped_runs_log_is_read_back_complete_scenarios_only() -> None:
    log = "\n".join(
        [
            "seed 3: original trained in 1.0s, cache warmed in 0.10s",
            "  seed 3 random:0.1: 90 retain / 10 forget (sample; default lau-calibrated)",
            "           retrain: UA  10.00 RA 100.00 TA  90.00 MIA  20.00 probe_UA   5.00 "
            "class_TA -   10.000s",
            "           default: UA   8.00 RA 100.00 TA  89.00 MIA  22.00 probe_UA   0.00 "
            "class_TA -    0.100s",
            "  seed 3 class:1: 90 retain / 10 forget (class; default lau)",
            "           retrain: UA 100.00 RA 100.00 TA  90.00 MIA 100.00 probe_UA  50.00 "
            "class_TA   0.00   10.000s",
            "           default: UA 100.00 RA 100.00 TA  90.00 MIA 100.00 probe_UA  50.00 "
            "class_TA   0.00    0.100s",
        ]
    )
    (result,) = results_from_log(log, "mnist1d")
    assert result["scenario"] == "random:0.1" and result["seeds"] == [3]
    assert result["methods"]["default"]["avg_gap"] == pytest.approx((2 + 0 + 1 + 2) / 4)
    assert result["methods"]["default"]["speedup_vs_retrain"] == pytest.approx(100.0)


def _row(gap: float, ua: float = 5.0) -> dict[str, float]:
    return {"UA": ua, "RA": 99.0, "TA": 90.0, "MIA": 20.0, "avg_gap": gap, "rte_s": 1.0}


def test_a_rerun_of_the_default_replaces_it_and_keeps_the_baselines() -> None:
    """After a change to the default method, ``retrain,default`` rerun on the same seeds
    is merged into the earlier full run: new default rows, the earlier baselines, the paired
    comparison recomputed; runs whose retrains differ are refused."""
    from unlearning.bench import _summarise, format_headline, format_table, merge

    seeds = [10, 11]
    first = _summarise(
        "d",
        "random:0.1",
        seeds,
        [{"retrain": _row(0.0), "default": _row(3.0), "neggrad": _row(2.0)} for _ in seeds],
        ["lau-calibrated"],
        "cpu",
    )
    rerun = _summarise(
        "d",
        "random:0.1",
        seeds,
        [{"retrain": _row(0.0), "default": _row(1.0)} for _ in seeds],
        ["lau-calibrated"],
        "cpu",
    )
    (merged,) = merge([first, rerun])
    assert merged["seeds"] == seeds
    assert merged["methods"]["default"]["per_seed_gap"] == [1.0, 1.0]
    assert merged["methods"]["neggrad"]["per_seed_gap"] == [2.0, 2.0]
    assert merged["paired"]["neggrad"]["default_lower"] == 2
    other = _summarise(
        "d", "random:0.1", seeds, [{"retrain": _row(0.0, ua=7.0)} for _ in seeds], [], "cpu"
    )
    with pytest.raises(ValueError, match="retrains differ"):
        merge([first, other])
    # neither run measured a second retrain: the table says so instead of judging a target
    table = format_table(merged)
    assert "noise floor not measured" in table and "MISSED" not in table
    # the headline keeps such a run's row (its gap and speed-up) and judges no target
    (row,) = format_headline([rerun]).splitlines()[2:]
    assert row.startswith("random:0.1 | 2 | lau-calibrated | 1.00") and "not measured" in row
    assert "**no**" not in row and "yes" not in row
    floor = [{**r, "retrain-2": _row(0.5)} for r in merged["rows"]]
    measured = _summarise("d", "random:0.1", seeds, floor, ["lau-calibrated"], "cpu")
    assert "noise floor (retrain-2 vs retrain) 0.50" in format_table(measured)


def test_the_regimes_run_the_protocols_data_models_and_scenarios(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """What `--regime R --scenario suite` runs, by default methods: issue 13's protocol (the
    hard regime is 3,000 MNIST-1D samples for 10 epochs; images are CIFAR-shaped on
    torchvision's ResNet-18; every scenario family; a second retrain and every baseline)."""
    import unlearning.bench as bench

    seen: dict[str, dict] = {}

    def fake_suite(**kw):  # type: ignore[no-untyped-def]
        seen[kw["dataset"] + str(kw["dataset_params"])] = kw
        return []

    monkeypatch.setattr(bench, "run_suite", fake_suite)
    for regime in ("mnist1d-default", "mnist1d-hard", "digits", "images"):
        seen.clear()
        main(["--regime", regime, "--scenario", "suite", "--seeds", "5", "--seed-offset", "10"])
        (kw,) = seen.values()
        assert kw["seeds"] == 5 and kw["seed_offset"] == 10
        assert list(kw["scenarios"]) == [
            "class:7",
            "random:0.05",
            "random:0.1",
            "random:0.2",
            "subjects:20",
            "most:7:0.9+0.05",  # 90 % of class 7 plus 5 % of the others
            "class:7+5",  # the whole class plus 5 other samples
        ]
        methods = kw["methods"]
        assert {"retrain", "retrain-2", "default"} <= set(methods)
        assert {"finetune", "neggrad", "random-label", "salun"} <= set(methods)
        ds = ul.load_dataset(kw["dataset"], seed=10, **kw["dataset_params"])
        arch = bench.DEFAULT_ARCH[kw["dataset"]]
        if regime == "mnist1d-hard":
            assert kw["train_epochs"] == 10
            assert len(ds.train) + len(ds.val) + len(ds.test) == 3000
        else:
            assert kw["train_epochs"] is None  # the architecture's own recipe
        if regime == "images":
            assert arch == "torchvision:resnet18" and ds.input_shape == (3, 32, 32)
            assert ds.num_classes == 10
        if regime == "digits":
            assert kw["dataset"] == "sklearn-digits" and arch == "digits-cnn"
