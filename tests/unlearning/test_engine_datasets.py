from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import torch

import unlearning as ul


def test_digits_is_deterministic_and_disjoint(digits: ul.Dataset) -> None:
    again = ul.load_dataset("sklearn-digits", seed=0)
    assert again.train.ids == digits.train.ids and torch.equal(again.train.x, digits.train.x)
    other = ul.load_dataset("sklearn-digits", seed=1)
    assert other.train.ids != digits.train.ids
    ids = [set(s.ids) for s in (digits.train, digits.val, digits.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert digits.train.ids[0].startswith("digits-") and digits.train.x.dtype == torch.float32
    assert digits.train.subjects is not None
    sizes = Counter(digits.train.subjects).values()
    assert 3 <= sum(sizes) / len(sizes) <= 5


def test_subject_erasure_forgets_all_of_a_subject(digits: ul.Dataset) -> None:
    assert digits.train.subjects is not None
    subject = digits.train.subjects[0]
    ids = [i for i, s in zip(digits.train.ids, digits.train.subjects, strict=True) if s == subject]
    data = digits.unlearn_data(ids)
    assert len(data.forget) == len(ids) and len(data.retain) == len(digits.train) - len(ids)


def test_mnist1d_is_generated_offline_and_deterministic() -> None:
    a = ul.load_dataset("mnist1d", seed=3, num_samples=500)
    b = ul.load_dataset("mnist1d", seed=3, num_samples=500)
    assert len(a.train) == 400 and len(a.val) + len(a.test) == 100
    assert a.train.ids == b.train.ids and torch.equal(a.train.x, b.train.x)
    assert tuple(a.train.x.shape[1:]) == (1, 40) == a.input_shape


def test_npz_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(
        path,
        x=rng.normal(size=(20, 4)),
        y=np.arange(20) % 3,
        ids=np.array([f"s{i}" for i in range(20)]),
        subjects=np.array(["p"] * 20),
        x_val=rng.normal(size=(6, 4)),
        y_val=np.arange(6) % 3,
        ids_val=np.array([f"v{i}" for i in range(6)]),
    )
    ds = ul.load_dataset("npz", path=str(path))
    assert ds.num_classes == 3 and ds.train.ids[3] == "s3" and ds.input_shape == (4,)
    assert ds.train.subjects == ("p",) * 20 and len(ds.val) == 6


def test_synthetic_cifar_is_cifar_shaped_and_deterministic() -> None:
    a = ul.load_dataset("synthetic-cifar", seed=1, n=40, n_val=8, n_test=8)
    b = ul.load_dataset("synthetic-cifar", seed=1, n=40, n_val=8, n_test=8)
    assert a.train.x.shape == (40, 3, 32, 32) and a.input_shape == (3, 32, 32)
    assert torch.equal(a.train.x, b.train.x) and a.train.ids == b.train.ids
    assert len(a.val) == len(a.test) == 8


def test_digits_rgb32_is_cifar_shaped_deterministic_and_keeps_the_digits_classes() -> None:
    a = ul.load_dataset("digits-rgb32", seed=4)
    b = ul.load_dataset("digits-rgb32", seed=4)
    c = ul.load_dataset("digits-rgb32", seed=5)
    assert a.input_shape == (3, 32, 32) == tuple(a.train.x.shape[1:]) and a.num_classes == 10
    assert a.train.ids == b.train.ids and torch.equal(a.train.x, b.train.x)
    assert not torch.equal(a.train.x[:10], c.train.x[:10])  # another seed, other colours
    # the same samples as scikit-learn's digits, with their labels, in the same splits
    digits = ul.load_dataset("sklearn-digits", seed=4)
    assert [i.split("-")[1] for i in a.val.ids] == [i.split("-")[1] for i in digits.val.ids]
    assert torch.equal(a.val.y, digits.val.y)
    assert len(a.val) >= ul.MIN_VAL  # large enough to calibrate on
    assert Counter(a.train.y.tolist()).keys() == set(range(10))
