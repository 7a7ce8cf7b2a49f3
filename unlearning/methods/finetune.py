"""Fine-tune the whole model on the retain set for a few epochs (catastrophic forgetting)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..architectures import SplitModel
from ..cache import FeatureCache
from ..types import Hooks, UnlearnData, UnlearnResult
from .full import train_full
from .registry import register

__all__ = ["FinetuneConfig", "finetune"]


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = 5
    """Passes over the retain set."""
    lr: float = 1e-3
    optimizer: str = "adamw"
    batch_size: int = 128
    seed: int = 0


@register("finetune", FinetuneConfig)
def finetune(
    model: SplitModel,
    data: UnlearnData,
    cfg: FinetuneConfig,
    *,
    device: torch.device,
    hooks: Hooks,
    cache: FeatureCache | None,
) -> UnlearnResult:
    def loss(xr: torch.Tensor, yr: torch.Tensor, _xf: object, _yf: object) -> torch.Tensor:
        return F.cross_entropy(model(xr), yr)

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
        with_forget=False,
    )
    return UnlearnResult(model, "finetune", asdict(cfg), 0.0, ())
