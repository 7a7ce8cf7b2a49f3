"""Checkpoints in tests: hashes, loading the demo CNN, and measuring what it remembers."""

from __future__ import annotations

import hashlib
from typing import Any


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def load_model(checkpoint: bytes) -> Any:
    import unlearning as ul

    return ul.load_checkpoint(checkpoint, arch_id="digits-cnn", num_classes=10)


def accuracy_and_confidence(
    model: Any, ids: list[str] | None, *, test_without_label: int | None = None
) -> tuple[float, float]:
    """Accuracy (%) and mean true-label probability of `model` on the digits training
    samples `ids`, or on the test split (ids=None), optionally without one class."""
    import torch

    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    ds = load_dataset(DEMO_DATASET, DEMO_PARAMS)
    if ids is None:
        split = ds.test
        if test_without_label is not None:
            split = split.subset(split.y != test_without_label)
    else:
        wanted = set(ids)
        split = ds.train.subset(torch.tensor([i in wanted for i in ds.train.ids]))
    model.eval()
    with torch.no_grad():
        probs = torch.softmax(model(split.x), dim=1)
    true = probs[torch.arange(len(split.y)), split.y]
    acc = (probs.argmax(1) == split.y).float().mean().item() * 100
    return acc, true.mean().item()
