"""``unlearn`` (copy, run a method, time it, record what changed), ``choose_method`` and the
depth policy ``ensure_depth``.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch

from .architectures import SplitModel
from .cache import FeatureCache
from .checkpoint import state_dict_changes
from .methods.registry import get_method, list_methods
from .metrics import MIN_VAL
from .types import Hooks, UnlearnData, UnlearnResult

__all__ = [
    "MIN_VAL",
    "DepthPolicy",
    "NoChangeError",
    "choose_method",
    "ensure_depth",
    "unlearn",
]


class NoChangeError(RuntimeError):
    """A method returned the model unchanged although the forget set is not empty."""


def choose_method(data: UnlearnData) -> str:
    """``"lau"`` for class scope; ``"lau-calibrated"`` for samples and for mixed requests
    (whole classes plus single samples: it runs ``lau`` on the classes first, in the same
    result); ``"lau"`` if the calibrated method is not installed."""
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
    Raises ``NoChangeError`` when the forget set is not empty and nothing changed: an
    unchanged model must never be published as the erased version by accident. The one
    exception is a method that measured that no change is required and says so in
    ``info["unchanged"]`` (``lau-calibrated``: every forget sample already sits at or below
    its calibrated held-out confidence, as a single sample below the val median does); the
    result is then returned with ``changed == ()`` and that reason.
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
    if len(data.forget) and not result.changed and not _declared_unchanged(result):
        raise NoChangeError(
            f"{method} changed no parameter for a forget set of {len(data.forget)} samples "
            f"(info: {result.info}); the model would be published unchanged"
        )
    hooks.progress("done", 1.0)
    return result


def _declared_unchanged(result: UnlearnResult) -> bool:
    """The method measured that nothing needed to change and recorded why (a non-empty
    ``info["unchanged"]`` string): not a silent no-op."""
    why = result.info.get("unchanged")
    return isinstance(why, str) and bool(why.strip())


@dataclass(frozen=True)
class DepthPolicy:
    """An operator's requirement that forgetting reach the backbone.

    After the chosen method ran, a linear probe is trained on the result's penultimate
    embeddings of the retain set plus held-out samples of the forgotten classes, and scored
    on the forget set (``probe_UA``, as ``evaluate`` reports it). Where ``probe_UA`` is below
    ``min_probe_ua`` the backbone still separates the forgotten samples; the job then runs
    ``escalate_to`` (with ``escalate_config``) on the original model and records why.
    """

    min_probe_ua: float = 10.0
    """Points. Retrain's own probe_UA, class 7 (BENCHMARKS.md, "Engine" full tables, seeds
    10-14): MNIST-1D hard 46 +- 6, MNIST-1D default 28 +- 7, images 27 +- 5, digits 4 +- 2 (a
    probe learns an easy class from its held-out samples even on a backbone that never saw
    it); head-only ``lau`` leaves it at 0-3. 10 separates the two on MNIST-1D and images; set
    it per model from a retrain measurement."""
    escalate_to: str = "retrain"
    """Measured (BENCHMARKS.md, "Depth on demand"): deeper ``lau`` cuts (2, 3) and SalUn /
    random-label, which touch the backbone, leave the probe at 0-8 where retrain reaches 18-52;
    only retraining reaches retrain's depth, so that is the default escalation."""
    escalate_config: dict[str, Any] | None = None
    scopes: tuple[str, ...] = ("class", "mixed")
    """Scopes the policy applies to (sample scope has no class a probe could recover)."""


def ensure_depth(
    model: SplitModel,
    data: UnlearnData,
    result: UnlearnResult,
    policy: DepthPolicy,
    *,
    device: torch.device | str = "cpu",
    hooks: Hooks | None = None,
    cache: FeatureCache | None = None,
    seed: int = 0,
    probe_ua: float | None = None,
) -> tuple[UnlearnResult, dict[str, Any]]:
    """``(result, record)``: ``result`` itself if its probe meets ``policy``, else the result
    of ``policy.escalate_to`` on ``model``; ``record`` says which was used and why (store it
    with the version). ``probe_ua``: ``result``'s probe if the caller has already measured
    it (``evaluate``'s ``probe_UA``, same seed), so it is not trained twice."""
    from .metrics import probe_only

    record: dict[str, Any] = {
        "policy": asdict(policy),
        "method": result.method,
        "escalated": False,
    }
    if data.scope not in policy.scopes:
        record["reason"] = f"scope {data.scope!r} is not covered by the depth policy"
        return result, record
    first = (
        probe_ua
        if probe_ua is not None
        else probe_only(result.model, data, device=device, seed=seed)
    )
    record["probe_UA"] = first
    if first >= policy.min_probe_ua:
        record["reason"] = (
            f"probe_UA {first:.2f} >= {policy.min_probe_ua:.2f}: the backbone no longer "
            f"separates the forgotten samples enough to require more"
        )
        return result, record
    config: Any = policy.escalate_config
    if config is None:
        config = _default_escalation(policy.escalate_to)
    deeper = unlearn(
        model, data, policy.escalate_to, config, device=device, hooks=hooks, cache=cache
    )
    second = probe_only(deeper.model, data, device=device, seed=seed)
    deeper.elapsed_s += result.elapsed_s
    record.update(
        escalated=True,
        method=deeper.method,
        config=deeper.config,
        escalated_probe_UA=second,
        reason=(
            f"probe_UA {first:.2f} < {policy.min_probe_ua:.2f} after {result.method}: a linear "
            f"probe still recovers the forgotten samples from the backbone; escalated to "
            f"{deeper.method} (probe_UA {second:.2f})"
        ),
    )
    deeper.info["depth"] = record
    return deeper, record


def _default_escalation(method: str) -> dict[str, Any] | None:
    """``lau`` escalates to a deeper cut (the last feature block and the head), with the
    attack radius relative to the activations there."""
    return (
        {"cut": 2, "relative": True, "eps": 0.5, "step": 0.1, "lr": 1e-3}
        if method == "lau"
        else None
    )
