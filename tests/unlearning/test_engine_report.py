"""The confidence histograms a version's verification pictures are drawn from."""

from __future__ import annotations

import copy

import unlearning as ul


def test_histograms_count_every_sample_and_show_a_forgotten_class_drop(
    digits_model: ul.SplitModel, class_data: ul.UnlearnData
) -> None:
    before = ul.confidence_histograms(digits_model, class_data)
    groups = before["groups"]
    assert isinstance(groups, dict)
    assert before["bins"] == list(ul.report.EDGES)
    for name, split in (("forget", class_data.forget), ("retain", class_data.retain)):
        assert groups[name]["n"] == len(split) == sum(groups[name]["counts"])
    # the trained model is confident on the class it learned
    assert groups["forget"]["quantiles"]["p50"] > 0.8

    result = ul.unlearn(copy.deepcopy(digits_model), class_data, method="lau")
    after = ul.confidence_histograms(result.model, class_data)["groups"]
    assert isinstance(after, dict)
    assert after["forget"]["quantiles"]["p50"] < 0.2
    assert after["retain"]["quantiles"]["p50"] > 0.8
    # per-sample data is not stored: only counts and five quantiles per group
    assert set(after["forget"]) == {"n", "counts", "quantiles"}
