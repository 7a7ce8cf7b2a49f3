"""``unlearn`` (copy, run a method, time it, record what changed) and ``choose_method``."""

from __future__ import annotations

import copy
import time
from dataclasses import asdict
from typing import Any

import torch

from .architectures import SplitModel
from .cache import FeatureCache
from .checkpoint import state_dict_changes
from .methods.registry import get_method, list_methods
from .types import Hooks, UnlearnData, UnlearnResult

__all__ = ["choose_method", "unlearn"]


def choose_method(data: UnlearnData) -> str:
    """``"lau"`` for class scope; ``"lau-calibrated"`` for samples (``"lau"`` if not installed)."""
    if data.scope in ("class", "empty"):
        return "lau"
    return "lau-calibrated" if "lau-calibrated" in list_methods() else "lau"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def unlearn(
    model: SplitModel,
    data: UnlearnData,
    method: str,
    config: Any = None,
    *,
    device: torch.device | str = "cpu",
    hooks: Hooks | None = None,
    cache: FeatureCache | None = None,
) -> UnlearnResult:
    """Run ``method`` on a private copy of ``model``; the input model is left untouched.

    ``config``: None (defaults), a dict of overrides, or the method's config dataclass.
    ``elapsed_s`` is wall time end to end (copy, activations not found in ``cache``, the
    method); ``changed`` lists the state-dict keys whose tensors differ from the input's.
    """
    dev = torch.device(device)
    spec = get_method(method)
    cfg = spec.make_config(config)
    hooks = hooks or Hooks()
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _sync(dev)
    start = time.perf_counter()
    work = copy.deepcopy(model).to(dev)
    if data.scope == "empty":  # nothing to forget: the copy is the answer
        result = UnlearnResult(work, method, asdict(cfg), 0.0, (), info={"empty": True})
    else:
        result = spec.fn(work, data, cfg, device=dev, hooks=hooks, cache=cache)
    _sync(dev)
    result.elapsed_s = time.perf_counter() - start
    # Methods freeze what they do not train; hand back a model as trainable as the input.
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in result.model.named_parameters():
        p.requires_grad_(flags.get(n, True))
    result.method = method
    result.changed = state_dict_changes(before, result.model.state_dict())
    hooks.progress("done", 1.0)
    return result
