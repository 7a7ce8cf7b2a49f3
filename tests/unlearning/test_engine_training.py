from __future__ import annotations

import pytest
import torch

import unlearning as ul


def test_training_is_deterministic_per_seed(digits: ul.Dataset) -> None:
    recipe = ul.TrainRecipe(epochs=1, batch_size=64)
    part = digits.train.subset(torch.arange(300))
    a = ul.train_model("digits-cnn", part, recipe=recipe, seed=5)
    b = ul.train_model("digits-cnn", part, recipe=recipe, seed=5)
    c = ul.train_model("digits-cnn", part, recipe=recipe, seed=6)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["head.weight"], sc["head.weight"])


def test_training_can_be_cancelled_mid_epoch(digits: ul.Dataset) -> None:
    calls = iter(range(1000))
    hooks = ul.Hooks(should_cancel=lambda: next(calls) >= 1)  # epoch start passes, batch 50 not
    with pytest.raises(ul.Cancelled):
        ul.train_model(
            "digits-cnn", digits, recipe=ul.TrainRecipe(epochs=3, batch_size=8), seed=0, hooks=hooks
        )


def test_nothing_to_forget_returns_an_unchanged_copy(
    digits: ul.Dataset, digits_model: ul.SplitModel
) -> None:
    data = digits.unlearn_data([])
    assert data.scope == "empty" and ul.choose_method(data) == "lau"
    res = ul.unlearn(digits_model, data, "lau")
    assert res.changed == () and res.model is not digits_model


def test_digits_model_is_accurate(digits: ul.Dataset, digits_model: ul.SplitModel) -> None:
    with torch.no_grad():
        acc = (digits_model(digits.test.x).argmax(1) == digits.test.y).float().mean()
    assert float(acc) > 0.96
