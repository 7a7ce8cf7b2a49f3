"""Most of a class: how much of it a model retrained on the remnant would keep.

A request that removes most (``metrics.MOSTLY_FORGOTTEN``) but not all of a class leaves a
remnant; a model retrained on it sees that class rarely and, depending on how many samples
remain and how long the recipe trains, loses much of it on held-out data (MNIST-1D, 3,000
samples, 10 epochs, 10 % of class 7 left: retrain keeps ~25 % of its val recall; digits,
a dozen left: ~90 %). The share is estimated from data the method may see, never from
``test`` or a retrained model:

- a **shadow**: a fresh, re-initialised copy of the layers above ``cut``, trained with the
  model's own recipe (epochs, batch size, optimiser, weight decay) on the retain activations
  at that cut, in which the class is down to its remnant. A rarely seen class gets few
  gradient steps and a low prior, as in retraining, so its val recall falls with the
  remnant's size and the recipe's length;
- ``kept_share`` = the shadow's val recall of the class / the model's own.

The backbone below the cut still separates the class (it learned it from every sample), so
the shadow errs on the side of keeping it; a deeper cut comes closer to retraining and costs
more (BENCHMARKS.md, "Most of a class"). ``shift_class_bias`` then lowers the head's bias
for the class until its val recall keeps only that share.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..architectures import SplitModel
from ..cache import FeatureCache, embed
from ..training import TrainRecipe, fit
from ..types import Hooks, Split, UnlearnData

__all__ = ["kept_shares", "shift_class_bias"]


def _fresh_copy(module: nn.Module, seed: int) -> nn.Module:
    fresh = copy.deepcopy(module)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for sub in fresh.modules():
            reset = getattr(sub, "reset_parameters", None)
            if callable(reset):
                reset()
    for p in fresh.parameters():
        p.requires_grad_(True)
    return fresh


@torch.enable_grad()
def kept_shares(
    model: SplitModel,
    data: UnlearnData,
    classes: tuple[int, ...],
    *,
    recipe: TrainRecipe,
    cut: int,
    seed: int,
    device: torch.device,
    cache: FeatureCache | None,
    hooks: Hooks,
) -> dict[int, float]:
    """Per class, the share of the model's val recall that a shadow trained on the retain
    set with ``recipe`` above ``cut`` keeps (1.0 where the class has no val sample)."""
    z_r, z_v = embed(model, data.retain, data.val, cut=cut, device=device, cache=cache)
    y_v = data.val.y.to(device)
    _, upper = model.split(cut)
    shadow = _fresh_copy(upper, seed)
    fit(
        shadow,
        Split(z_r, data.retain.y, data.retain.ids),
        recipe,
        seed=seed,
        device=device,
        hooks=hooks,
        phase="shadow",
    )
    out: dict[int, float] = {}
    with torch.no_grad():
        own = upper(z_v).argmax(1)
        fresh = shadow.eval()(z_v).argmax(1)
    for k in classes:
        rows = y_v == k
        base = float((own[rows] == k).float().mean()) if bool(rows.any()) else 0.0
        kept = float((fresh[rows] == k).float().mean()) if bool(rows.any()) else 0.0
        out[k] = min(1.0, kept / base) if base > 0 else 1.0
    return out


@torch.no_grad()
def shift_class_bias(
    model: SplitModel,
    data: UnlearnData,
    kept_share: dict[int, float],
    device: torch.device,
    cache: FeatureCache | None,
) -> dict[str, float]:
    """Lower the head's bias of each mostly-forgotten class until its val recall falls to
    ``kept_share`` of the original's (bisection; never raises a bias)."""
    head = model.head
    (z_v,) = embed(model, data.val, cut=1, device=device, cache=cache)
    y_v = data.val.y.to(device)
    out: dict[str, float] = {}
    for k, share in kept_share.items():
        rows = y_v == k
        if not bool(rows.any()):
            continue

        def recall(delta: float, k: int = k, rows: torch.Tensor = rows) -> float:
            logits = head(z_v[rows])
            logits[:, k] += delta
            return float((logits.argmax(1) == k).float().mean())

        goal = share * recall(0.0)
        lo, hi = -50.0, 0.0
        if recall(0.0) <= goal:
            out[str(k)] = 0.0
            continue
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if recall(mid) < goal else (lo, mid)
        head.bias[k] += hi
        out[str(k)] = round(hi, 4)
    return out
