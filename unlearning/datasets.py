"""Datasets by id, each with stable sample ids, subject refs, a val split and a test split.

- ``sklearn-digits``: scikit-learn's 8x8 digits (1,797 samples), split by ``seed``.
- ``mnist1d``: MNIST-1D generated offline (``num_samples``, default 5,000: 4,000 train,
  500 val, 500 test).
- ``synthetic-cifar``: random 3x32x32 tensors with class structure (``n`` train samples),
  for timing ResNet-18 where CIFAR itself cannot be downloaded.
- ``shapes``: the generated CIFAR-shaped image set of ``unlearning.shapes`` (rendered shapes,
  real class structure; ``n`` train, ``n_val``, ``n_test``), rendered in memory and
  normalised with mean 0.5 / std 0.25; the same images ``shapes.write_image_folder`` writes.
- ``npz``: a user's file (``path``) with arrays ``x, y, ids`` (optional ``subjects``) and
  held-out ``x_val, y_val, ids_val`` (optional ``x_test, y_test, ids_test``).

Training samples are grouped into pseudonymous subjects (``subject_size`` samples each,
default 5) so subject-level erasure can be exercised. Same params, same data and ids.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .types import Dataset, Split

__all__ = ["list_datasets", "load_dataset"]


def _split(
    x: np.ndarray,
    y: np.ndarray,
    ids: list[str],
    rows: np.ndarray,
    subjects: list[str | None] | None = None,
) -> Split:
    subj = None if subjects is None else tuple(subjects[i] for i in rows)
    return Split(
        torch.as_tensor(np.ascontiguousarray(x[rows]), dtype=torch.float32),
        torch.as_tensor(y[rows], dtype=torch.long),
        tuple(ids[i] for i in rows),
        subj,
    )


def _subjects(n: int, size: int, seed: int, prefix: str) -> list[str | None]:
    """Group ``n`` samples into subjects of ``size`` by a seeded permutation."""
    order = np.random.default_rng(seed + 7919).permutation(n)
    out: list[str | None] = [None] * n
    for pos, i in enumerate(order):
        out[int(i)] = f"{prefix}-{pos // max(size, 1):05d}"
    return out


def _three_way(n: int, val_frac: float, test_frac: float, seed: int) -> tuple[np.ndarray, ...]:
    order = np.random.default_rng(seed).permutation(n)
    n_val, n_test = round(n * val_frac), round(n * test_frac)
    return (
        np.sort(order[n_val + n_test :]),
        np.sort(order[:n_val]),
        np.sort(order[n_val : n_val + n_test]),
    )


def _digits(
    seed: int = 0, val_frac: float = 0.15, test_frac: float = 0.15, subject_size: int = 5
) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    y = bunch.target.astype(np.int64)
    ids = [f"digits-{i:05d}" for i in range(len(y))]
    train, val, test = _three_way(len(y), val_frac, test_frac, seed)
    subjects = _subjects(len(y), subject_size, seed, "subject")
    return Dataset(
        "sklearn-digits",
        10,
        (1, 8, 8),
        _split(x, y, ids, train, subjects),
        _split(x, y, ids, val),
        _split(x, y, ids, test),
        {"seed": seed, "val_frac": val_frac, "test_frac": test_frac, "subject_size": subject_size},
    )


def _digits_rgb32(
    seed: int = 0,
    val_frac: float = 0.15,
    test_frac: float = 0.15,
    subject_size: int = 5,
    noise: float = 0.1,
) -> Dataset:
    """scikit-learn's digits as CIFAR-shaped images: each 8x8 digit upscaled to 32x32,
    drawn in a random light colour on a random dark background, shifted by up to 4 pixels and with
    pixel noise. The class structure is the digits' own (a real one, not a prototype plus
    noise), the input shape that of CIFAR-10 (3x32x32); sample ``i``'s look depends only on
    ``(seed, i)``."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    g = torch.Generator().manual_seed(seed)
    n = len(bunch.target)
    ink = torch.from_numpy(bunch.data.astype(np.float32) / 16.0).reshape(n, 1, 8, 8)
    ink = torch.nn.functional.interpolate(ink, size=(24, 24), mode="bilinear", align_corners=False)
    # a light ink on a dark ground, each colour random: the digit always stands out
    fg = 0.6 + 0.4 * torch.rand(n, 3, 1, 1, generator=g)
    bg = 0.4 * torch.rand(n, 3, 1, 1, generator=g)
    tile = ink.clamp(0, 1) * fg + (1 - ink.clamp(0, 1)) * bg
    x = bg.expand(n, 3, 32, 32).clone()
    dx, dy = torch.randint(0, 9, (2, n), generator=g).tolist()
    for i in range(n):
        x[i, :, dy[i] : dy[i] + 24, dx[i] : dx[i] + 24] = tile[i]
    x = (x + noise * torch.randn(x.shape, generator=g) - 0.5) / 0.25
    y = bunch.target.astype(np.int64)
    ids = [f"digits32-{i:05d}" for i in range(n)]
    train, val, test = _three_way(n, val_frac, test_frac, seed)
    subjects = _subjects(n, subject_size, seed, "subject")
    xs = x.numpy()
    return Dataset(
        "digits-rgb32",
        10,
        (3, 32, 32),
        _split(xs, y, ids, train, subjects),
        _split(xs, y, ids, val),
        _split(xs, y, ids, test),
        {"seed": seed, "val_frac": val_frac, "test_frac": test_frac, "noise": noise},
    )


def _mnist1d(seed: int = 0, num_samples: int = 5000, subject_size: int = 5) -> Dataset:
    from mnist1d.data import get_dataset_args, make_dataset  # lazily: GPU machines lack it

    args = get_dataset_args()
    args.num_samples = int(num_samples)
    args.seed = int(seed)
    state = np.random.get_state()  # make_dataset seeds numpy's global RNG; leave it as found
    try:
        raw = make_dataset(args)
    finally:
        np.random.set_state(state)
    x = np.concatenate([raw["x"], raw["x_test"]]).astype(np.float32).reshape(-1, 1, 40)
    y = np.concatenate([raw["y"], raw["y_test"]]).astype(np.int64)
    n_train = len(raw["y"])
    ids = [f"mnist1d-{i:07d}" for i in range(len(y))]
    held = np.random.default_rng(seed).permutation(np.arange(n_train, len(y)))
    half = len(held) // 2
    subjects = _subjects(len(y), subject_size, seed, "subject")
    return Dataset(
        "mnist1d",
        10,
        (1, 40),
        _split(x, y, ids, np.arange(n_train), subjects),
        _split(x, y, ids, np.sort(held[:half])),
        _split(x, y, ids, np.sort(held[half:])),
        {"seed": seed, "num_samples": num_samples, "subject_size": subject_size},
    )


def _synthetic_cifar(
    seed: int = 0,
    n: int = 50000,
    n_val: int = 5000,
    n_test: int = 5000,
    num_classes: int = 10,
    noise: float = 1.0,
    subject_size: int = 5,
) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    # Class prototypes: smooth random images (upsampled 8x8 noise), so conv nets can learn them.
    protos = torch.nn.functional.interpolate(
        torch.randn(num_classes, 3, 8, 8, generator=g),
        size=(32, 32),
        mode="bilinear",
        align_corners=False,
    )
    total = n + n_val + n_test
    y = torch.randint(0, num_classes, (total,), generator=g)
    x = protos[y] + noise * torch.randn(total, 3, 32, 32, generator=g)
    ids = [f"scifar-{i:06d}" for i in range(total)]
    subjects = _subjects(total, subject_size, seed, "subject")

    def part(lo: int, hi: int, subj: bool = False) -> Split:
        s = tuple(subjects[lo:hi]) if subj else None
        return Split(x[lo:hi].contiguous(), y[lo:hi].clone(), tuple(ids[lo:hi]), s)

    return Dataset(
        "synthetic-cifar",
        num_classes,
        (3, 32, 32),
        part(0, n, True),
        part(n, n + n_val),
        part(n + n_val, total),
        {"seed": seed, "n": n, "n_val": n_val, "n_test": n_test, "noise": noise},
    )


def _shapes(
    seed: int = 0, n: int = 2000, n_val: int = 500, n_test: int = 500, size: int = 32
) -> Dataset:
    from . import shapes
    from .preprocess import Preprocess

    to_tensor = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)).transform()
    recs = list(shapes.records(n, n_val, n_test))
    xs, ys = [], []
    for rec in recs:
        image, label = shapes.render(rec["index"], seed, size)
        xs.append(to_tensor(image))
        ys.append(label)
    x, y = torch.stack(xs), torch.tensor(ys, dtype=torch.long)
    ids = tuple(r["sample_id"] for r in recs)
    subjects = tuple(r["subject_ref"] or None for r in recs[:n])

    def part(lo: int, hi: int, subj: tuple[str | None, ...] | None = None) -> Split:
        return Split(x[lo:hi].contiguous(), y[lo:hi].clone(), ids[lo:hi], subj)

    return Dataset(
        "shapes",
        len(shapes.CLASSES),
        (3, size, size),
        part(0, n, subjects),
        part(n, n + n_val),
        part(n + n_val, n + n_val + n_test),
        {"seed": seed, "n": n, "n_val": n_val, "n_test": n_test, "size": size},
    )


def _npz(path: str, seed: int = 0, num_classes: int | None = None) -> Dataset:
    with np.load(Path(path), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for need in ("x", "y", "ids", "x_val", "y_val", "ids_val"):
        if need not in arrays:
            raise ValueError(f"npz file lacks array {need!r}")

    def part(suffix: str, with_subjects: bool) -> Split:
        x = arrays["x" + suffix].astype(np.float32)
        y = arrays["y" + suffix].astype(np.int64)
        ids = [str(i) for i in arrays["ids" + suffix]]
        if not len(x) == len(y) == len(ids):
            raise ValueError(f"arrays x{suffix}, y{suffix}, ids{suffix} differ in length")
        subj = None
        if with_subjects and "subjects" in arrays:
            subj = [str(s) if str(s) else None for s in arrays["subjects"]]
        return _split(x, y, ids, np.arange(len(y)), subj)

    train = part("", True)
    val = part("_val", False)
    test = part("_test", False) if "x_test" in arrays else val
    k = num_classes or int(max(train.y.max(), val.y.max(), test.y.max()).item()) + 1
    return Dataset(
        "npz", k, tuple(train.x.shape[1:]), train, val, test, {"path": str(path), "seed": seed}
    )


_LOADERS: dict[str, Callable[..., Dataset]] = {
    "sklearn-digits": _digits,
    "digits-rgb32": _digits_rgb32,
    "mnist1d": _mnist1d,
    "synthetic-cifar": _synthetic_cifar,
    "shapes": _shapes,
    "npz": _npz,
}


def list_datasets() -> list[str]:
    return sorted(_LOADERS)


def load_dataset(dataset_id: str, **params: Any) -> Dataset:
    """Load a dataset by id; ``KeyError`` listing the known ids if unknown."""
    loader = _LOADERS.get(dataset_id)
    if loader is None:
        raise KeyError(f"unknown dataset {dataset_id!r}; known: {list_datasets()}")
    return loader(**params)
