"""Random-label: train on retain plus the forget set relabelled with random wrong labels."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..architectures import SplitModel
from ..cache import FeatureCache
from ..types import Hooks, UnlearnData, UnlearnResult
from .full import train_full, wrong_labels
from .registry import register

__all__ = ["RandomLabelConfig", "random_label"]


@dataclass(frozen=True)
class RandomLabelConfig:
    epochs: int = 3
    """Passes over retain and relabelled forget sets (one forget batch per retain batch)."""
    lr: float = 3e-4
    optimizer: str = "adamw"
    batch_size: int = 128
    seed: int = 0


@register("random-label", RandomLabelConfig)
def random_label(
    model: SplitModel,
    data: UnlearnData,
    cfg: RandomLabelConfig,
    *,
    device: torch.device,
    hooks: Hooks,
    cache: FeatureCache | None,
) -> UnlearnResult:
    train_relabelled(model, data, cfg, device=device, hooks=hooks)
    return UnlearnResult(model, "random-label", asdict(cfg), 0.0, ())


def train_relabelled(
    model: SplitModel,
    data: UnlearnData,
    cfg: RandomLabelConfig,
    *,
    device: torch.device,
    hooks: Hooks,
    after_backward: Callable[[], None] | None = None,
) -> None:
    """Train on retain plus the forget set under random wrong labels (SalUn adds a mask)."""
    labels = wrong_labels(data.forget.y, data.num_classes, torch.Generator().manual_seed(cfg.seed))

    def loss(
        xr: torch.Tensor, yr: torch.Tensor, xf: torch.Tensor | None, yf: torch.Tensor | None
    ) -> torch.Tensor:
        if xf is None or yf is None:
            return F.cross_entropy(model(xr), yr)
        # One batch of retain and relabelled forget samples, each sample weighted equally.
        return F.cross_entropy(model(torch.cat([xr, xf])), torch.cat([yr, yf]))

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
        forget_labels=labels,
        after_backward=after_backward,
    )
