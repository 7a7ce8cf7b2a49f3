"""Training recipes and ``train_model`` (used for the original model and for retraining)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .architectures import SplitModel, get_architecture
from .loop import batches, make_optimizer, run_loop
from .types import Dataset, Hooks, Split

__all__ = ["TrainRecipe", "default_recipe", "train_model"]


@dataclass(frozen=True)
class TrainRecipe:
    """How a model is trained from scratch; ``retrain`` reuses the original's recipe."""

    epochs: int = 30
    """Passes over the training set."""
    lr: float = 3e-3
    """Peak learning rate (cosine-annealed to 0 when ``schedule == "cosine"``)."""
    batch_size: int = 128
    weight_decay: float = 0.0
    optimizer: str = "adamw"
    """``"adamw"``, ``"adam"`` or ``"sgd"``."""
    momentum: float = 0.9
    """SGD only."""
    schedule: str = "cosine"
    """``"cosine"`` or ``"constant"``."""
    label_smoothing: float = 0.0


_RECIPES: dict[str, TrainRecipe] = {
    "digits-cnn": TrainRecipe(epochs=20, lr=3e-3, batch_size=64, weight_decay=1e-4),
    "mnist1d-cnn": TrainRecipe(epochs=40, lr=3e-3, batch_size=128, weight_decay=1e-2),
    # The recipe of the SalUn / l1-sparse papers for ResNet-18 on CIFAR-10.
    "resnet18-cifar": TrainRecipe(
        epochs=182, lr=0.1, batch_size=256, weight_decay=5e-4, optimizer="sgd"
    ),
    # torchvision's ResNet-18 on small (32x32) images, sized for CPU benchmarks: 8 epochs of
    # AdamW reach ~100% train and ~85-90% test accuracy on `digits-rgb32`.
    "torchvision:resnet18": TrainRecipe(epochs=8, lr=1e-3, batch_size=64, weight_decay=5e-4),
}


def default_recipe(arch_id: str) -> TrainRecipe:
    return _RECIPES.get(arch_id, TrainRecipe())


def fit(
    model: nn.Module,
    split: Split,
    recipe: TrainRecipe,
    *,
    seed: int,
    device: torch.device | str,
    hooks: Hooks,
    phase: str = "train",
    params: list[nn.Parameter] | None = None,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> nn.Module:
    """Train ``model`` (in place) on ``split`` with cross-entropy, following ``recipe``.

    ``criterion(output, labels)`` replaces the cross-entropy (label smoothing is then the
    criterion's own business): a model whose output is not one logit row per sample.
    """
    model.to(device).train()
    opt = make_optimizer(
        params if params is not None else model.parameters(),
        recipe.optimizer,
        recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay,
    )
    sched = None
    if recipe.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(recipe.epochs, 1))
    gen = torch.Generator().manual_seed(seed)
    x, y = split.x.to(device), split.y.to(device)
    ce = criterion or nn.CrossEntropyLoss(label_smoothing=recipe.label_smoothing)

    def loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        value: torch.Tensor = ce(model(batch[0]), batch[1])
        return value

    run_loop(
        optimizer=opt,
        epochs=recipe.epochs,
        scheduler=sched,
        hooks=hooks,
        phase=phase,
        epoch_batches=lambda _e: batches((x, y), recipe.batch_size, generator=gen),
        loss=loss,
    )
    return model.eval()


def train_model(
    arch_id: str,
    dataset_or_split: Dataset | Split,
    *,
    recipe: TrainRecipe | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    hooks: Hooks | None = None,
    num_classes: int | None = None,
) -> SplitModel:
    """A fresh ``arch_id`` model trained on a dataset's train split (or on a Split).

    Deterministic per seed on a given device; returns the model in eval mode on ``device``.
    """
    if isinstance(dataset_or_split, Dataset):
        split, k = dataset_or_split.train, dataset_or_split.num_classes
    else:
        split, k = dataset_or_split, int(dataset_or_split.y.max().item()) + 1
    k = num_classes or k
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = get_architecture(arch_id, num_classes=k)
    fit(
        model,
        split,
        recipe or default_recipe(arch_id),
        seed=seed,
        device=device,
        hooks=hooks or Hooks(),
    )
    return model
