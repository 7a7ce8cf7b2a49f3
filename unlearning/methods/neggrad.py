"""NegGrad+: gradient descent on the retain set and ascent on the forget set."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..architectures import SplitModel
from ..cache import FeatureCache
from ..types import Hooks, UnlearnData, UnlearnResult
from .full import train_full
from .registry import register

__all__ = ["NegGradConfig", "neggrad"]


@dataclass(frozen=True)
class NegGradConfig:
    epochs: int = 3
    """Passes over retain and forget sets (one forget batch per retain batch)."""
    lr: float = 1e-3
    optimizer: str = "adamw"
    batch_size: int = 128
    beta: float = 0.95
    """Weight of the retain loss; 1 - beta weighs the (negated) forget loss."""
    seed: int = 0


@register("neggrad", NegGradConfig)
def neggrad(
    model: SplitModel,
    data: UnlearnData,
    cfg: NegGradConfig,
    *,
    device: torch.device,
    hooks: Hooks,
    cache: FeatureCache | None,
) -> UnlearnResult:
    def loss(
        xr: torch.Tensor, yr: torch.Tensor, xf: torch.Tensor | None, yf: torch.Tensor | None
    ) -> torch.Tensor:
        out = cfg.beta * F.cross_entropy(model(xr), yr)
        if xf is not None and yf is not None:
            out = out - (1 - cfg.beta) * F.cross_entropy(model(xf), yf)
        return out

    train_full(
        model,
        data,
        loss=loss,
        epochs=cfg.epochs,
        lr=cfg.lr,
        optimizer=cfg.optimizer,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        device=device,
        hooks=hooks,
        with_forget=True,
    )
    return UnlearnResult(model, "neggrad", asdict(cfg), 0.0, ())
