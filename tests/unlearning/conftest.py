"""Shared fixtures: real sklearn digits and one small CNN trained once per session."""

from __future__ import annotations

import pytest
import torch

import unlearning as ul

FORGET_CLASS = 3


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    # Two cores shared with other processes: one intra-op thread is much faster here.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits() -> ul.Dataset:
    return ul.load_dataset("sklearn-digits", seed=0)


@pytest.fixture(scope="session")
def digits_model(digits: ul.Dataset) -> ul.SplitModel:
    return ul.train_model("digits-cnn", digits, seed=0, device="cpu")


@pytest.fixture(scope="session")
def class_data(digits: ul.Dataset) -> ul.UnlearnData:
    ids = [
        i
        for i, y in zip(digits.train.ids, digits.train.y.tolist(), strict=True)
        if y == FORGET_CLASS
    ]
    return digits.unlearn_data(ids)


@pytest.fixture(scope="session")
def sample_data(digits: ul.Dataset) -> ul.UnlearnData:
    return digits.unlearn_data(digits.train.ids[::10])
