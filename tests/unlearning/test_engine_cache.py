from __future__ import annotations

from pathlib import Path

import torch

import unlearning as ul


def test_features_are_computed_once_and_reused_by_later_versions(
    tmp_path: Path, digits: ul.Dataset, digits_model: ul.SplitModel, class_data: ul.UnlearnData
) -> None:
    cache = ul.FeatureCache(tmp_path)
    (first,) = cache.features(digits_model, digits.train)
    assert cache.computed == len(digits.train)

    # A later version in the lineage (head-only change) reuses every row: nothing computed.
    v2 = ul.unlearn(digits_model, class_data, "lau", device="cpu", cache=cache).model
    assert cache.computed == len(digits.train)
    (again,) = cache.features(v2, class_data.retain)
    assert cache.computed == len(digits.train)
    assert torch.equal(again, first[: len(digits.train)][_rows(digits, class_data)])

    # Another process (a fresh cache object on the same directory) reads them from disk.
    other = ul.FeatureCache(tmp_path)
    other.features(digits_model, digits.train)
    assert other.computed == 0


def _rows(digits: ul.Dataset, data: ul.UnlearnData) -> torch.Tensor:
    pos = {i: r for r, i in enumerate(digits.train.ids)}
    return torch.tensor([pos[i] for i in data.retain.ids])


def test_a_changed_backbone_invalidates(
    digits: ul.Dataset, digits_model: ul.SplitModel, class_data: ul.UnlearnData
) -> None:
    cache = ul.FeatureCache()
    cache.features(digits_model, digits.val)
    tuned = ul.unlearn(digits_model, class_data, "finetune", {"epochs": 1}, device="cpu").model
    assert tuned.state_dict().keys() and ul.FeatureCache().key(tuned) != cache.key(digits_model)
    cache.features(tuned, digits.val)
    assert cache.computed == 2 * len(digits.val)


def test_changed_sample_content_is_recomputed(
    digits: ul.Dataset, digits_model: ul.SplitModel
) -> None:
    cache = ul.FeatureCache()
    cache.features(digits_model, digits.val)
    x = digits.val.x.clone()
    x[0] += 0.5
    changed = ul.Split(x, digits.val.y, digits.val.ids)
    cache.features(digits_model, changed)
    assert cache.computed == len(digits.val) + 1


def test_empty_splits_have_the_feature_shape(digits: ul.Dataset, digits_model: ul.SplitModel):
    empty = digits.train.subset(torch.zeros(len(digits.train), dtype=torch.bool))
    (cached,) = ul.FeatureCache().features(digits_model, empty)
    (direct,) = ul.embed(digits_model, empty)
    assert cached.shape == direct.shape == (0, digits_model.head.in_features)
