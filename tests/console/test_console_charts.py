"""The verification pictures are drawn from the stored histograms, on one shared scale."""

from __future__ import annotations

from app.console.charts import charts

EDGES = [0.0, 0.5, 0.9, 0.99, 1.0]


def _stage(forget: list[int], retain: list[int]) -> dict[str, object]:
    def group(counts: list[int]) -> dict[str, object]:
        return {"n": sum(counts), "counts": counts, "quantiles": {"p50": 0.95}}

    return {"bins": EDGES, "groups": {"forget": group(forget), "retain": group(retain)}}


def test_charts_share_one_scale_and_follow_the_counts() -> None:
    drawn = charts(
        {"before": _stage([0, 0, 0, 4], [0, 0, 0, 8]), "after": _stage([4, 0, 0, 0], [0, 0, 0, 8])}
    )
    assert drawn is not None
    before, after = drawn
    assert [s.name for s in before.series] == ["forget", "retain"]  # no held-out recorded
    # all of the forgotten samples in the top bin before, in the bottom bin after: the same
    # height (100 %) at opposite ends of the axis, drawn on the same scale
    top_before = before.series[0].path.split("L")[-2]
    bottom_after = after.series[0].path.split("L")[2]
    assert top_before.split(",")[1] == bottom_after.split(",")[1] == str(float(10))
    assert before.y_ticks == after.y_ticks
    # the median marker sits inside the 0.9–0.99 bin, the third of four equal-width bins
    assert 40 + 310 * 2 / 4 < before.series[0].median_x < 40 + 310 * 3 / 4


def test_nothing_recorded_draws_nothing() -> None:
    assert charts(None) is None
    assert charts({"after": _stage([1], [1])}) is None
