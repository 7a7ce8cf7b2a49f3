"""The shared optimisation loop: optimiser, epochs, progress and cancellation.

Methods and training supply a loss over a batch; the loop owns everything else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import nn

from .types import Hooks

__all__ = ["batches", "make_optimizer", "predict", "run_loop"]

Batch = tuple[torch.Tensor, ...]


def make_optimizer(
    params: Iterable[nn.Parameter],
    name: str,
    lr: float,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; known: ['adam', 'adamw', 'sgd']")


def batches(
    tensors: Sequence[torch.Tensor],
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    shuffle: bool = True,
) -> Iterator[Batch]:
    """Minibatches of aligned tensors (shuffled with ``generator``, on the tensors' device)."""
    n = len(tensors[0])
    if n == 0:
        return
    if shuffle:
        order = torch.randperm(n, generator=generator).to(tensors[0].device)
    else:
        order = torch.arange(n, device=tensors[0].device)
    for lo in range(0, n, batch_size):
        idx = order[lo : lo + batch_size]
        yield tuple(t[idx] for t in tensors)


def run_loop(
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    epoch_batches: Callable[[int], Iterable[Batch]],
    loss: Callable[[Batch], torch.Tensor],
    hooks: Hooks,
    phase: str,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    before_epoch: Callable[[int], bool] | None = None,
    after_backward: Callable[[], None] | None = None,
    check_every: int = 50,
) -> int:
    """Run up to ``epochs`` epochs; ``before_epoch(e)`` returning True stops early.

    Cancellation is checked before each epoch and every ``check_every`` batches.
    ``after_backward()`` runs between backward and step (e.g. to mask gradients).
    Returns the number of epochs run. Raises ``Cancelled`` when the hooks say so.
    """
    for epoch in range(epochs):
        hooks.check()
        if before_epoch is not None and before_epoch(epoch):
            return epoch
        for i, batch in enumerate(epoch_batches(epoch)):
            if i and i % check_every == 0:
                hooks.check()
            optimizer.zero_grad(set_to_none=True)
            loss(batch).backward()
            if after_backward is not None:
                after_backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        hooks.progress(phase, (epoch + 1) / epochs)
    return epochs


@torch.no_grad()
def predict(
    module: nn.Module, x: torch.Tensor, device: torch.device | str, *, batch_size: int = 1024
) -> torch.Tensor:
    """Outputs of ``module`` (in eval mode) on ``x``, batched, returned on ``device``."""
    was_training = module.training
    module.eval()
    try:
        outs = [
            module(x[lo : lo + batch_size].to(device, non_blocking=True))
            for lo in range(0, len(x), batch_size)
        ] or [module(x[:0].to(device))]  # no rows: still the right trailing shape
    finally:
        module.train(was_training)
    return torch.cat(outs)
