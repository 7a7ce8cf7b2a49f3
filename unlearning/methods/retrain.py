"""Retrain from scratch on the retain set with the original recipe: the gold standard."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..architectures import SplitModel
from ..cache import FeatureCache
from ..training import TrainRecipe, default_recipe, train_model
from ..types import Hooks, UnlearnData, UnlearnResult
from .registry import register

__all__ = ["RetrainConfig", "retrain"]


@dataclass(frozen=True)
class RetrainConfig:
    recipe: TrainRecipe | None = None
    """None: the architecture's default recipe (the one the original was trained with)."""
    seed: int = 0
    """Initialisation and shuffling seed of the fresh model."""


@register("retrain", RetrainConfig)
def retrain(
    model: SplitModel,
    data: UnlearnData,
    cfg: RetrainConfig,
    *,
    device: torch.device,
    hooks: Hooks,
    cache: FeatureCache | None,
) -> UnlearnResult:
    fresh = train_model(
        model.arch_id,
        data.retain,
        recipe=cfg.recipe or default_recipe(model.arch_id),
        seed=cfg.seed,
        device=device,
        hooks=hooks,
        num_classes=data.num_classes,
    )
    return UnlearnResult(fresh, "retrain", asdict(cfg), 0.0, ())
