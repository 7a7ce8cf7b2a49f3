"""SalUn (Fan et al., ICLR 2024): random-label unlearning restricted to salient weights.

The saliency mask keeps the weights whose forget-loss gradient magnitude is in the top
``1 - sparsity`` share (one global threshold); only those weights are updated.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..architectures import SplitModel
from ..cache import FeatureCache
from ..types import Hooks, UnlearnData, UnlearnResult
from .random_label import RandomLabelConfig, train_relabelled
from .registry import register

__all__ = ["SalUnConfig", "salun"]


@dataclass(frozen=True)
class SalUnConfig(RandomLabelConfig):
    """Random-label's settings plus the mask's sparsity."""

    sparsity: float = 0.5
    """Share of weights frozen (those with the smallest forget-gradient magnitude)."""


@register("salun", SalUnConfig)
def salun(
    model: SplitModel,
    data: UnlearnData,
    cfg: SalUnConfig,
    *,
    device: torch.device,
    hooks: Hooks,
    cache: FeatureCache | None,
) -> UnlearnResult:
    params = [p for p in model.parameters() if p.requires_grad]
    model.eval()
    model.zero_grad(set_to_none=True)
    xf, yf = data.forget.x.to(device), data.forget.y.to(device)
    for lo in range(0, len(yf), 512):
        F.cross_entropy(model(xf[lo : lo + 512]), yf[lo : lo + 512], reduction="sum").backward()
    grads = [
        p.grad.abs().flatten() if p.grad is not None else torch.zeros_like(p).flatten()
        for p in params
    ]
    flat = torch.cat(grads)
    k = int(cfg.sparsity * flat.numel())
    threshold = flat.kthvalue(max(k, 1)).values if k > 0 else flat.min() - 1
    masks = [
        (g > threshold).reshape(p.shape).to(p.dtype) for g, p in zip(grads, params, strict=True)
    ]
    model.zero_grad(set_to_none=True)

    def apply_mask() -> None:
        for p, m in zip(params, masks, strict=True):
            if p.grad is not None:
                p.grad.mul_(m)

    train_relabelled(model, data, cfg, device=device, hooks=hooks, after_backward=apply_mask)
    return UnlearnResult(model, "salun", asdict(cfg), 0.0, ())
