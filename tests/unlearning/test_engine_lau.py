from __future__ import annotations

import pytest
import torch

import unlearning as ul
from unlearning.loop import predict

FORGET_CLASS = 3  # the class the session fixture `class_data` forgets


@pytest.fixture(scope="module")
def lau_result(digits_model: ul.SplitModel, class_data: ul.UnlearnData) -> ul.UnlearnResult:
    return ul.unlearn(digits_model, class_data, "lau", device="cpu")


def test_lau_changes_only_the_head(
    digits_model: ul.SplitModel, lau_result: ul.UnlearnResult
) -> None:
    before, after = digits_model.state_dict(), lau_result.model.state_dict()
    for key, value in before.items():
        if not key.startswith("head."):
            assert torch.equal(value, after[key]), key
    assert set(lau_result.changed) == {"head.weight", "head.bias"}
    assert not lau_result.backbone_changed
    # The next version in the lineage may be a full-model method: nothing is left frozen.
    assert all(p.requires_grad for p in lau_result.model.parameters())


def test_lau_makes_the_forgotten_class_unpredicted(
    digits: ul.Dataset, lau_result: ul.UnlearnResult, class_data: ul.UnlearnData
) -> None:
    model = lau_result.model
    forget_pred = predict(model, class_data.forget.x, "cpu").argmax(1)
    assert bool((forget_pred != FORGET_CLASS).all())
    test_pred = predict(model, digits.test.x, "cpu").argmax(1)
    assert int((test_pred == FORGET_CLASS).sum()) == 0
    others = digits.test.y != FORGET_CLASS
    acc = float((test_pred[others] == digits.test.y[others]).float().mean())
    assert acc > 0.95


def test_unlearn_leaves_the_input_model_alone(
    digits_model: ul.SplitModel, class_data: ul.UnlearnData, lau_result: ul.UnlearnResult
) -> None:
    pred = predict(digits_model, class_data.forget.x, "cpu").argmax(1)
    assert float((pred == class_data.forget.y).float().mean()) > 0.95
    assert lau_result.model is not digits_model
    assert lau_result.elapsed_s > 0
    assert lau_result.config["alpha"] == 0.5 and lau_result.config["temperature"] == 4.0


def test_cancel_hook_stops_the_run(digits_model: ul.SplitModel, class_data: ul.UnlearnData) -> None:
    seen: list[str] = []
    hooks = ul.Hooks(progress=lambda phase, _f: seen.append(phase), should_cancel=lambda: True)
    with pytest.raises(ul.Cancelled):
        ul.unlearn(digits_model, class_data, "lau", device="cpu", hooks=hooks)


def test_partial_pgd_stays_in_the_ball(digits_model: ul.SplitModel, class_data: ul.UnlearnData):
    lower, upper = digits_model.split(1)
    z = predict(lower, class_data.forget.x[:64], "cpu")
    y = class_data.forget.y[:64]
    adv = ul.partial_pgd(upper, z, y, eps=0.5, step=0.2, steps=5, nonneg=True)
    assert float((adv - z).abs().max()) <= 0.5 + 1e-6
    assert bool((adv >= 0).all())
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        assert loss(upper(adv), y) > loss(upper(z), y)
