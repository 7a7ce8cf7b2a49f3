"""Partial-PGD: an untargeted L-inf PGD attack on activations at a cut, against the layers above.

The gradient never flows below the cut, which is what makes LAU fast.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["partial_pgd"]


def partial_pgd(
    upper: nn.Module,
    z: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    step: float,
    steps: int,
    nonneg: bool,
) -> torch.Tensor:
    """Adversarial activations ``z'`` with ``|z' - z|_inf <= eps`` that raise CE(upper(z'), y).

    ``upper`` is used as is (call ``.eval()`` first if it holds BatchNorm); its parameters get
    no gradient. ``nonneg`` keeps ``z' >= 0`` (activations after a ReLU). No [0, 1] clamp: these
    are features, not pixels. Returns a detached tensor.
    """
    z = z.detach()
    adv = z.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(upper(adv), y)
        (grad,) = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            adv = adv + step * grad.sign()
            adv = torch.max(torch.min(adv, z + eps), z - eps)
            if nonneg:
                adv = adv.clamp_min(0)
        adv = adv.detach()
    return adv
