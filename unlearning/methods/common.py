"""Pieces shared by the layer-level methods (``lau`` and its calibrated variant)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["freeze", "kd_loss", "mask_classes", "wrong_class_targets"]


def kd_loss(
    student: torch.Tensor, target: torch.Tensor, *, alpha: float, temperature: float
) -> torch.Tensor:
    """(1-a) CE(student, argmax target) + a T^2 KL(softmax(target/T) || softmax(student/T))."""
    hard = F.cross_entropy(student, target.argmax(dim=1))
    t = temperature
    soft = F.kl_div(
        F.log_softmax(student / t, dim=1), F.softmax(target / t, dim=1), reduction="batchmean"
    )
    return (1 - alpha) * hard + alpha * t * t * soft


def mask_classes(
    logits: torch.Tensor, classes: Sequence[int], margin: float = 30.0
) -> torch.Tensor:
    """Copy of ``logits`` with ``classes`` pushed ``margin`` below each row's minimum."""
    if not classes:
        return logits
    out = logits.clone()
    idx = torch.tensor(list(classes), dtype=torch.long, device=logits.device)
    low = logits.min(dim=1, keepdim=True).values - margin
    out[:, idx] = low.expand(-1, len(idx))
    return out


def wrong_class_targets(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``logits`` where rows still predicting ``y`` get ``y`` pushed below the runner-up.

    Used when Partial-PGD did not cross the boundary: the target becomes the nearest wrong
    class by logit.
    """
    out = logits.clone()
    still = out.argmax(dim=1) == y
    if bool(still.any()):
        rows = still.nonzero().flatten()
        runner = out[rows].scatter(1, y[rows, None], float("-inf")).max(dim=1).values
        out[rows, y[rows]] = runner - 1.0
    return out


def freeze(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module
