"""``lau-calibrated`` on real MNIST-1D: forget samples end up looking held out, and nothing
below the cut moves.

One small model (MNIST-1D, 4,000 train samples, a shortened recipe) is trained once per
module; each test runs the method in well under a second.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import unlearning as ul
from unlearning.loop import predict
from unlearning.training import default_recipe

FORGET_FRACTION = 0.1

# A small, harder setting: 3,000 samples (2,400 train, 300 val, 300 test), 10 epochs. The
# original model remembers its forget set (100 %) but reaches only ~89 % on val, an 11-point
# gap for unlearning to close.
NUM_SAMPLES, EPOCHS = 3000, 10

# Tolerance on |forget accuracy - val accuracy| after unlearning at cut 2, in points. With
# 240 forget and 300 val samples at ~90 % accuracy each accuracy has a binomial standard
# error of ~1.8 points, their difference ~2.6; a model retrained without the forget set
# lands within 2 points of its val accuracy on MNIST-1D (10 seeds, BENCHMARKS.md). 5 points
# (~2 standard errors) does not flake, and the original (11 points) fails it. Measured: 2.2.
ACCURACY_TOLERANCE = 5.0

# At cut 1 a single linear layer cannot pull individual forget samples that far without
# hurting retain/val (BENCHMARKS.md: cut 1 under-forgets when the generalisation gap is
# large): the default must still close at least this share of the gap. Measured: 0.52.
CUT1_GAP_CLOSED = 0.4


@pytest.fixture(scope="module")
def mnist1d() -> ul.Dataset:
    return ul.load_dataset("mnist1d", seed=0, num_samples=NUM_SAMPLES)


@pytest.fixture(scope="module")
def model(mnist1d: ul.Dataset) -> ul.SplitModel:
    recipe = dataclasses.replace(default_recipe("mnist1d-cnn"), epochs=EPOCHS)
    return ul.train_model("mnist1d-cnn", mnist1d, recipe=recipe, seed=0, device="cpu")


@pytest.fixture(scope="module")
def data(mnist1d: ul.Dataset) -> ul.UnlearnData:
    rng = np.random.default_rng(0)
    ids = mnist1d.train.ids
    chosen = rng.choice(len(ids), round(FORGET_FRACTION * len(ids)), replace=False)
    return mnist1d.unlearn_data([ids[i] for i in sorted(chosen)])


@pytest.fixture(scope="module")
def cache() -> ul.FeatureCache:
    return ul.FeatureCache()


def _acc(model: ul.SplitModel, split: ul.Split) -> float:
    pred = predict(model, split.x, "cpu").argmax(1)
    return float((pred == split.y).float().mean() * 100)


@pytest.fixture(scope="module")
def snapshot(model: ul.SplitModel) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def result(model, data, cache, snapshot) -> ul.UnlearnResult:
    return ul.unlearn(model, data, "lau-calibrated", device="cpu", cache=cache)


def test_registered_with_documented_defaults() -> None:
    spec = ul.get_method("lau-calibrated")
    cfg = spec.make_config()
    assert dataclasses.is_dataclass(cfg) and spec.config_cls.__dataclass_params__.frozen
    assert cfg.cut == 1
    with pytest.raises(ValueError, match="unknown config keys"):
        spec.make_config({"nope": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.cut = 2  # type: ignore[misc]


def test_forget_accuracy_ends_near_held_out_accuracy(model, data, cache) -> None:
    val_before = _acc(model, data.val)
    before = _acc(model, data.forget)
    assert before - val_before > 2 * ACCURACY_TOLERANCE, "the original must remember its forget set"
    res = ul.unlearn(model, data, "lau-calibrated", {"cut": 2}, device="cpu", cache=cache)
    after = _acc(res.model, data.forget)
    assert abs(after - _acc(res.model, data.val)) <= ACCURACY_TOLERANCE
    assert abs(after - val_before) <= ACCURACY_TOLERANCE


def test_default_cut_moves_forget_accuracy_towards_held_out(model, data, result) -> None:
    val_before = _acc(model, data.val)
    before = _acc(model, data.forget)
    after = _acc(result.model, data.forget)
    val_after = _acc(result.model, data.val)
    assert val_before - 3.0 <= val_after
    assert after - val_after <= (1 - CUT1_GAP_CLOSED) * (before - val_before)
    assert after >= val_after - ACCURACY_TOLERANCE, "must not over-forget either"


def test_cut_escalates_when_the_head_cannot_reach_the_target(model, data, cache, result) -> None:
    """At cut 1 the head alone stays far above its calibrated target here; the default then
    redoes the calibration one cut deeper at a time (here to cut 3) and says why."""
    head_only = ul.unlearn(model, data, "lau-calibrated", {"escalate_cut": 0}, cache=cache)
    assert "escalated" not in head_only.info
    missed = head_only.info["forget_accuracy"] - head_only.info["target_accuracy"]
    assert missed > 2.0
    escalated = result.info["escalated"]
    assert escalated["to_cut"] >= 2 and result.info["cut"] == escalated["to_cut"]
    # one cut deeper at a time, each step with its reason
    assert [s["to_cut"] for s in escalated["steps"]] == list(range(2, escalated["to_cut"] + 1))
    assert "stayed above its calibrated target" in result.info["escalated"]["reason"]
    reached = result.info["forget_accuracy"] - result.info["target_accuracy"]
    assert reached < missed
    assert result.backbone_changed


def test_retain_and_held_out_accuracy_hold(model, data, result) -> None:
    assert _acc(result.model, data.retain) >= 98.0
    assert _acc(result.model, data.val) >= _acc(model, data.val) - 3.0


def test_forget_confidence_looks_held_out(result, data) -> None:
    """The forget set's true-label confidences resemble val's: a share of them is low."""
    metrics = ul.evaluate(result.model, data, "cpu")
    assert metrics["MIA"] is not None and metrics["MIA"] > 2.0


@pytest.mark.parametrize("cut", [1, 2])
def test_nothing_below_the_cut_changes(model, data, cache, cut: int) -> None:
    cfg = {"cut": cut, "escalate_cut": 0}
    res = ul.unlearn(model, data, "lau-calibrated", cfg, device="cpu", cache=cache)
    upper = model.upper_prefixes(cut)
    before, after = model.state_dict(), res.model.state_dict()
    for key, value in before.items():
        if not key.startswith(upper):
            assert torch.equal(value, after[key]), key
    assert res.changed, "the upper layers must change"
    assert all(key.startswith(upper) for key in res.changed)
    assert res.backbone_changed == (cut > 1)
    assert res.config["cut"] == cut


def test_input_model_untouched_and_test_split_unused(model, data, cache, result, snapshot) -> None:
    """The method never reads `test`: poisoning it changes nothing."""
    nan_test = ul.Split(torch.full_like(data.test.x, float("nan")), data.test.y, data.test.ids)
    poisoned = dataclasses.replace(data, test=nan_test)
    res = ul.unlearn(model, poisoned, "lau-calibrated", device="cpu", cache=cache)
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, res.model.state_dict()[key]), key
    for key, value in snapshot.items():
        assert torch.equal(value, model.state_dict()[key]), key


def test_progress_is_reported_and_cancel_stops_the_run(model, data, cache) -> None:
    seen: list[tuple[str, float]] = []
    ul.unlearn(
        model,
        data,
        "lau-calibrated",
        device="cpu",
        cache=cache,
        hooks=ul.Hooks(progress=lambda p, f: seen.append((p, f))),
    )
    phases = [p for p, _ in seen]
    assert {"embed", "attack", "unlearn"} <= set(phases)
    assert all(0.0 <= f <= 1.0 for _, f in seen)

    calls: list[str] = []

    def cancel_during_distillation() -> bool:
        return bool(calls) and calls[-1] == "unlearn"

    hooks = ul.Hooks(
        progress=lambda p, _f: calls.append(p), should_cancel=cancel_during_distillation
    )
    with pytest.raises(ul.Cancelled):
        ul.unlearn(model, data, "lau-calibrated", device="cpu", cache=cache, hooks=hooks)
    assert "unlearn" in calls and "done" not in calls


def test_empty_forget_set_is_a_no_op(model, mnist1d) -> None:
    data = mnist1d.unlearn_data([])
    res = ul.unlearn(model, data, "lau-calibrated", device="cpu")
    assert res.changed == ()


def test_retain_levels_give_a_forget_set_of_hard_samples_lower_targets(model, mnist1d, cache):
    """``levels="retain"`` reads each forget sample's target at its own percentile among
    training samples: a forget set made of the samples nearest the boundary gets lower
    targets than the uniform spread, which assumes every forget set is a typical one
    (measured: mean level 0.0007 and target accuracy 0 % against 0.5 and 80 %)."""
    with torch.no_grad():
        logits = predict(model, mnist1d.train.x, "cpu")
    own = logits.gather(1, mnist1d.train.y[:, None]).squeeze(1)
    margin = own - logits.scatter(1, mnist1d.train.y[:, None], float("-inf")).max(1).values
    hardest = margin.argsort()[:60]
    data = mnist1d.unlearn_data([mnist1d.train.ids[i] for i in sorted(hardest.tolist())])
    cfg = {"escalate_cut": 0, "iters": 5}
    uniform = ul.unlearn(model, data, "lau-calibrated", cfg, cache=cache).info
    retain = ul.unlearn(model, data, "lau-calibrated", {**cfg, "levels": "retain"}, cache=cache)
    assert uniform["levels_mean"] == pytest.approx(0.5)
    assert retain.info["levels_mean"] < 0.2
    assert retain.info["target_accuracy"] < uniform["target_accuracy"] - 10
    with pytest.raises(ValueError, match="levels must be"):
        ul.unlearn(model, data, "lau-calibrated", {**cfg, "levels": "nope"}, cache=cache)


def test_most_of_a_class_loses_as_much_of_its_forget_samples_as_of_its_val(
    model, mnist1d, cache
) -> None:
    """90 % of class 7 forgotten (plus 5 % of the rest): the class's forget samples nearest
    the boundary get wrong-class targets in the share the shifted teacher's val recall of the
    class loses (``class_wrong="recall"``), so they do not stay right more often than the
    class's held-out samples; the default ``"none"`` leaves that to the confidence quantiles
    (the option did not hold up on held-out seeds: BENCHMARKS.md, "Most of a class")."""
    from unlearning.bench import forget_ids

    data = mnist1d.unlearn_data(forget_ids(mnist1d, "most:7:0.9+0.05", 0))
    forget7 = data.forget.subset(data.forget.y == 7)
    val7 = data.val.subset(data.val.y == 7)
    cfg = {"escalate_cut": 0}
    res = ul.unlearn(model, data, "lau-calibrated", {**cfg, "class_wrong": "recall"}, cache=cache)
    plain = ul.unlearn(model, data, "lau-calibrated", cfg, cache=cache)
    kept = res.info["mostly_forgotten"]["7"]["target_recall"]
    goal = kept * _acc(model, val7) / 100
    assert "class_wrong" not in plain.info
    assert res.info["class_wrong"]["7"] / len(forget7) == pytest.approx(1 - goal, abs=0.05)
    # the outcome: the class's forget samples end right no more often than its held-out
    # samples are meant to (2 binomial standard errors over the 211 forget samples). Not
    # "less often than without the option": that difference is float noise here (28.4 vs
    # 27.5 % with one torch thread, 21.8 vs 26.5 % with two, same model)
    se = 100 * (goal * (1 - goal) / len(forget7)) ** 0.5
    assert _acc(res.model, forget7) <= 100 * goal + 2 * se
    with pytest.raises(ValueError, match="class_wrong must be"):
        ul.unlearn(model, data, "lau-calibrated", {"class_wrong": "nope"}, cache=cache)


def test_most_of_a_class_keeps_the_share_the_remnant_estimate_gives(
    model, mnist1d, cache, monkeypatch
) -> None:
    """The class's targets come from the estimate of how much of it a retrained model keeps:
    forced to keep 20 % or 70 % of its held-out recall, the result keeps about that (val
    recall of class 7, ~38 samples: within 0.15) and the two differ, in that order."""
    from unlearning.bench import forget_ids
    from unlearning.methods import lau_calibrated as lc

    data = mnist1d.unlearn_data(forget_ids(mnist1d, "most:7:0.9+0.05", 0))
    val7 = data.val.subset(data.val.y == 7)
    base = _acc(model, val7) / 100
    real = lc.probe_kept_shares
    kept: dict[float, float] = {}
    for share in (0.2, 0.7):

        def forced(*args, _share=share, **kw):  # type: ignore[no-untyped-def]
            shares, record = real(*args, **kw)
            return {k: _share for k in shares}, record

        monkeypatch.setattr(lc, "probe_kept_shares", forced)
        res = ul.unlearn(model, data, "lau-calibrated", {"escalate_cut": 0}, cache=cache)
        assert res.info["mostly_forgotten"]["7"]["target_recall"] == share
        kept[share] = _acc(res.model, val7) / 100 / base
        assert kept[share] == pytest.approx(share, abs=0.15), kept
    assert kept[0.2] < kept[0.7]
