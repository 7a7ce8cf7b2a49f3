"""Most of a class: how much of it a model retrained on the remnant would keep.

A request that removes most (``metrics.MOSTLY_FORGOTTEN``) but not all of a class leaves a
remnant; a model retrained on it sees that class rarely and, depending on how many samples
remain and how long the recipe trains, loses much of it on held-out data (MNIST-1D, 3,000
samples, 10 epochs, 10 % of class 7 left: retrain keeps ~25 % of its val recall; digits,
a dozen left: ~90 %). The share is estimated from data the method may see, never from
``test`` or a retrained model:

- ``probe_kept_shares`` (the default): at several depths of the model a fresh linear probe is
  trained with the model's recipe on the retain set (the class down to its remnant) and on the
  whole training set; the share kept at a depth is the ratio of their val recalls of the class,
  the estimate its mean over the depths. The top features were shaped by the class (a probe
  there learns it from the remnant almost fully), the first block's hardly (about as badly as
  from raw input); a retrained network's features lie in between. Measured against retraining
  on four regimes (BENCHMARKS.md, "Most of a class"): within 0.04-0.08 of retrain's share on
  average, where the shadow below kept 0.5-1.0 against retrain's 0.25-0.64;
- ``kept_shares``, a **shadow**: a fresh, re-initialised copy of the layers above ``cut``,
  trained with the model's own recipe on the retain activations at that cut; the backbone
  below still separates the class (it learned it from every sample), so it keeps far too
  much of it where retraining loses it (MNIST-1D hard, ResNet-18 images).

``bias_for_recall`` finds the shift of a class's logit that brings its recall to a goal;
``shift_class_bias`` applies it to the head (optional in ``lau-calibrated``).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..architectures import SplitModel
from ..cache import FeatureCache, embed
from ..training import TrainRecipe, fit
from ..types import Hooks, Split, UnlearnData

__all__ = [
    "bias_for_recall",
    "depth_cuts",
    "kept_shares",
    "num_cuts",
    "probe_kept_shares",
    "shift_class_bias",
]


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


def num_cuts(model: SplitModel) -> int:
    """How many cuts ``model.split`` accepts (the last one puts everything above the input)."""
    points = getattr(model, "cut_points", None)
    if callable(points):
        return len(points())
    return len(model.features) + 1


def depth_cuts(model: SplitModel, depths: int) -> list[int]:
    """At most ``depths`` cuts spread evenly from the head's input (cut 1) to the first
    block's output (the deepest cut below which something was learned; the input itself
    is not a depth)."""
    deepest = max(num_cuts(model) - 1, 1)
    if depths <= 1 or deepest == 1:
        return [1]
    n = min(depths, deepest)
    return sorted({round(1 + i * (deepest - 1) / (n - 1)) for i in range(n)})


def _pooled(z: torch.Tensor, max_dim: int) -> torch.Tensor:
    """Flattened activations, spatially average-pooled until at most ``max_dim`` values
    remain per sample (channels are never merged)."""
    if z.dim() >= 3 and z[0].numel() > max_dim:
        channels, spatial = z.shape[1], z.shape[2:]
        side = max(1, int((max_dim / channels) ** (1 / len(spatial))))
        if len(spatial) == 1:
            z = F.adaptive_avg_pool1d(z, min(side, spatial[0]))
        elif len(spatial) == 2:
            z = F.adaptive_avg_pool2d(z, (min(side, spatial[0]), min(side, spatial[1])))
    return z.flatten(1)


def _pooled_embed(
    model: SplitModel, split: Split, cut: int, device: torch.device, max_dim: int, chunk: int
) -> torch.Tensor:
    """``_pooled`` activations of ``split`` at ``cut``, ``chunk`` rows at a time."""
    parts = [
        _pooled(embed(model, split.subset(rows), cut=cut, device=device)[0].float().cpu(), max_dim)
        for rows in torch.arange(len(split)).split(max(chunk, 1))
    ]
    return torch.cat(parts) if parts else torch.empty(0)


class _DepthProbes(nn.Module):
    """One linear probe per depth over the depths' activations laid side by side: probe d
    reads only its own ``dims[d]`` columns. Each is initialised as a lone probe with ``seed``
    would be; the output is ``(depths, n, classes)``."""

    def __init__(
        self, dims: list[int], num_classes: int, seed: int, label_smoothing: float = 0.0
    ) -> None:
        super().__init__()
        self.dims = dims
        self.label_smoothing = label_smoothing
        self.probes = nn.ModuleList(_fresh_copy(nn.Linear(d, num_classes), seed) for d in dims)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        cols = z.split(self.dims, dim=1)
        return torch.stack([probe(c) for probe, c in zip(self.probes, cols, strict=True)])

    def criterion(self, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Each probe's own mean cross-entropy, summed: each probe's gradient is the one its
        separate fit would get."""
        return torch.stack(
            [F.cross_entropy(out, y, label_smoothing=self.label_smoothing) for out in logits]
        ).sum()


@torch.enable_grad()
def probe_kept_shares(
    model: SplitModel,
    data: UnlearnData,
    classes: tuple[int, ...],
    *,
    recipe: TrainRecipe,
    seed: int,
    device: torch.device,
    hooks: Hooks,
    depths: int = 4,
    max_dim: int = 1024,
    chunk: int = 4096,
) -> tuple[dict[int, float], dict[str, object]]:
    """Per class, the share of its held-out recall a model retrained without the forget set
    would keep, estimated from linear probes at several depths of the model.

    How much of a rarely seen class a retrained network keeps depends on how well features
    learned (mostly) from the other classes serve it. The model's own stack spans that range:
    its top features were shaped by the class and a probe there learns it from the remnant
    almost fully; its first block's features hardly know any class and a probe there learns
    the class from the remnant about as badly as from raw input. At each of ``depths`` cuts
    (``depth_cuts``) a fresh linear probe (standardised, pooled activations; the model's own
    recipe) is trained twice, on the retain set (the class down to its remnant) and on the
    whole training set (retain + forget); the share kept at that depth is the ratio of their
    val recalls of the class, and the estimate is its mean over the depths. The depths'
    probes are trained side by side in one fit per training set (``_DepthProbes``: same
    batches, same initialisation, same gradients as separate fits, one loop). Reads retain,
    forget and val only. Measured against retraining: BENCHMARKS.md, "Most of a class".

    Activations are computed ``chunk`` rows at a time and pooled at once, so what is held is
    at most ``max_dim`` values per row, not a whole split's activations at an early depth.
    """
    train_y = torch.cat([data.retain.y, data.forget.y])
    y_v = data.val.y
    cuts = depth_cuts(model, depths)
    parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
    for cut in cuts:
        hooks.check()
        z_r, z_f, z_v = (
            _pooled_embed(model, s, cut, device, max_dim, chunk)
            for s in (data.retain, data.forget, data.val)
        )
        z_all = torch.cat([z_r, z_f])
        mu, sd = z_all.mean(0), z_all.std(0) + 1e-6
        parts.append(((z_r - mu) / sd, (z_f - mu) / sd, (z_v - mu) / sd))
    # every depth's probe in one fit (``_DepthProbes``): the same batches as separate fits
    z_r, z_f, z_v = (torch.cat(p, dim=1) for p in zip(*parts, strict=True))
    dims = [p[0].shape[1] for p in parts]
    predicted = []
    for z, y in ((z_r, data.retain.y), (torch.cat([z_r, z_f]), train_y)):
        probes = _DepthProbes(dims, model.num_classes, seed, recipe.label_smoothing)
        split = Split(z, y, tuple(str(i) for i in range(len(y))))
        fit(
            probes,
            split,
            recipe,
            seed=seed,
            device=device,
            hooks=hooks,
            phase="shadow",
            criterion=probes.criterion,
        )
        with torch.no_grad():
            predicted.append(probes(z_v.to(device)).argmax(2))  # (depths, n_val)
    per_depth: dict[int, dict[int, float]] = {k: {} for k in classes}
    for k in classes:
        rows = (y_v == k).to(predicted[0].device)
        if not bool(rows.any()):
            continue
        for d, cut in enumerate(cuts):
            kept = float((predicted[0][d][rows] == k).float().mean())
            full = float((predicted[1][d][rows] == k).float().mean())
            if full > 0:
                per_depth[k][cut] = min(1.0, kept / full)
    out = {k: (sum(v.values()) / len(v) if v else 1.0) for k, v in per_depth.items()}
    record: dict[str, object] = {
        str(k): {str(c): round(r, 4) for c, r in v.items()} for k, v in per_depth.items()
    }
    return out, record


@torch.no_grad()
def class_recall(
    model: SplitModel,
    data: UnlearnData,
    classes: tuple[int, ...],
    device: torch.device,
    cache: FeatureCache | None,
) -> dict[int, float]:
    """The model's val recall of each class (0.0 where the class has no val sample)."""
    (z_v,) = embed(model, data.val, cut=1, device=device, cache=cache)
    pred = model.head(z_v).argmax(1)
    y_v = data.val.y.to(pred.device)
    return {
        k: float((pred[y_v == k] == k).float().mean()) if bool((y_v == k).any()) else 0.0
        for k in classes
    }


@torch.no_grad()
def bias_for_recall(logits: torch.Tensor, k: int, goal: float) -> float:
    """The shift of logit ``k`` that brings the recall of class ``k`` over ``logits`` (rows of
    that class) nearest ``goal``: recall is non-decreasing in the shift, so bisect between a
    shift below the goal and one at or above it and take whichever lands nearer (0.0 when
    already there or out of reach). A goal of 0 is sought as "below half a row" (every
    shift reaches recall >= 0), so it gives the smallest shift at which no row is right."""

    def recall(delta: float) -> float:
        shifted = logits.clone()
        shifted[:, k] += delta
        return float((shifted.argmax(1) == k).float().mean())

    sought = max(goal, 0.5 / max(len(logits), 1))
    lo, hi = (-50.0, 0.0) if recall(0.0) >= sought else (0.0, 50.0)
    if recall(lo) >= sought or recall(hi) < sought:
        return 0.0
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if recall(mid) >= sought else (mid, hi)
    return lo if abs(recall(lo) - goal) < abs(recall(hi) - goal) else hi


@torch.no_grad()
def shift_class_bias(
    model: SplitModel,
    data: UnlearnData,
    kept_share: dict[int, float],
    base_recall: dict[int, float],
    device: torch.device,
    cache: FeatureCache | None,
    *,
    lower_only: bool = False,
) -> dict[str, float]:
    """Move the head's bias of each mostly-forgotten class until its val recall is
    ``kept_share`` of ``base_recall`` (the model's before unlearning), in either direction:
    the distillation may have taken the class below that share as well as left it above
    (``lower_only``: never raise a bias)."""
    head = model.head
    (z_v,) = embed(model, data.val, cut=1, device=device, cache=cache)
    y_v = data.val.y.to(device)
    out: dict[str, float] = {}
    for k, share in kept_share.items():
        rows = y_v == k
        if not bool(rows.any()):
            continue
        shift = bias_for_recall(head(z_v[rows]), k, share * base_recall[k])
        if lower_only:
            shift = min(shift, 0.0)
        head.bias[k] += shift
        out[str(k)] = round(shift, 4)
    return out
