from __future__ import annotations

import pytest

import unlearning as ul


def test_unknown_method_is_refused_with_the_known_names() -> None:
    with pytest.raises(KeyError) as err:
        ul.get_method("nope")
    for name in ("lau", "retrain", "finetune", "neggrad", "random-label", "salun"):
        assert name in str(err.value)


def test_every_baseline_is_registered() -> None:
    assert {"lau", "retrain", "finetune", "neggrad", "random-label", "salun"} <= set(
        ul.list_methods()
    )


def test_unknown_config_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown config keys"):
        ul.get_method("lau").make_config({"epsilon": 1.0})
    assert ul.get_method("lau").make_config({"eps": 2.0}).eps == 2.0


def test_unknown_architecture_and_dataset_list_the_known_ids() -> None:
    with pytest.raises(KeyError, match="digits-cnn"):
        ul.get_architecture("vgg-nope")
    with pytest.raises(KeyError, match="sklearn-digits"):
        ul.load_dataset("imagenet")
    assert {"digits-cnn", "mnist1d-cnn", "resnet18-cifar"} <= set(ul.list_architectures())


def test_choose_method_by_scope(class_data: ul.UnlearnData, sample_data: ul.UnlearnData) -> None:
    assert class_data.scope == "class"
    assert ul.choose_method(class_data) == "lau"
    expected = "lau-calibrated" if "lau-calibrated" in ul.list_methods() else "lau"
    assert ul.choose_method(sample_data) == expected
