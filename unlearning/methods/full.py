"""A loop for the full-model baselines: retain batches, optionally paired with forget batches."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..loop import make_optimizer, run_loop
from ..types import Hooks, UnlearnData

__all__ = ["train_full", "wrong_labels"]

Loss = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None], torch.Tensor
]


def wrong_labels(y: torch.Tensor, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """A uniformly random label different from ``y`` for each sample."""
    shift = torch.randint(1, num_classes, (len(y),), generator=generator).to(y.device)
    return (y + shift) % num_classes


def train_full(
    model: nn.Module,
    data: UnlearnData,
    *,
    loss: Loss,
    epochs: int,
    lr: float,
    optimizer: str,
    batch_size: int,
    seed: int,
    device: torch.device,
    hooks: Hooks,
    with_forget: bool,
    forget_labels: torch.Tensor | None = None,
    weight_decay: float = 0.0,
    after_backward: Callable[[], None] | None = None,
) -> None:
    """Train every parameter (BatchNorm in train mode) for ``epochs`` passes over the retain set.

    ``loss(x_r, y_r, x_f, y_f)``; when ``with_forget``, each step also gets a forget batch
    sized so that one epoch passes over both sets once, with labels ``forget_labels``
    (default: the true labels).
    """
    gen = torch.Generator().manual_seed(seed)
    xr, yr = data.retain.x.to(device), data.retain.y.to(device)
    xf = data.forget.x.to(device)
    yf = (forget_labels if forget_labels is not None else data.forget.y).to(device)
    opt = make_optimizer(model.parameters(), optimizer, lr, weight_decay=weight_decay)
    model.train()

    def epoch_batches(_e: int) -> Iterator[tuple[torch.Tensor, ...]]:
        order = torch.randperm(len(yr), generator=gen).to(device)
        f_order = torch.randperm(max(len(yf), 1), generator=gen).to(device)
        steps = max(1, math.ceil(len(yr) / batch_size))
        f_batch = max(1, math.ceil(len(yf) / steps))
        for i in range(steps):
            idx = order[i * batch_size : (i + 1) * batch_size]
            if with_forget and len(yf):
                f_idx = f_order[i * f_batch : (i + 1) * f_batch]
                if len(f_idx):
                    yield xr[idx], yr[idx], xf[f_idx], yf[f_idx]
                    continue
            yield xr[idx], yr[idx]

    def batch_loss(b: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return loss(b[0], b[1], b[2] if len(b) > 2 else None, b[3] if len(b) > 3 else None)

    run_loop(
        optimizer=opt,
        epochs=epochs,
        epoch_batches=epoch_batches,
        loss=batch_loss,
        hooks=hooks,
        phase="unlearn",
        after_backward=after_backward,
    )
    model.eval()
