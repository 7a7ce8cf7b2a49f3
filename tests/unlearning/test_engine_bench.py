from __future__ import annotations

import json

import unlearning as ul
from unlearning.bench import forget_ids, main, run_benchmark


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


def test_benchmark_json_has_the_issue_shape(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out.json"
    main(
        [
            "--dataset",
            "sklearn-digits",
            "--scenario",
            "class:3",
            "--methods",
            "lau,nope",
            "--seeds",
            "1",
            "--train-epochs",
            "2",
            "--json",
            str(out),
        ]
    )
    result = json.loads(out.read_text())
    assert set(result) == {"scenario", "dataset", "device", "seeds", "methods"}
    assert set(result["methods"]) == {"original", "retrain", "lau"}
    keys = {"UA", "RA", "TA", "MIA", "probe_UA", "avg_gap", "rte_s", "speedup_vs_retrain", "std"}
    assert set(result["methods"]["lau"]) == keys
    assert result["methods"]["retrain"]["avg_gap"] == 0.0
    printed = capsys.readouterr().out
    assert "not registered" in printed and "lau |" in printed
    assert run_benchmark is not None
