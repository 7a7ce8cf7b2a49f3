"""Layer Attack Unlearning (Kim, Lee, Woo, AAAI 2024), as published: class/identity scope.

1. Partial-PGD on the forget samples' activations at the cut, against the layers above only.
2. Only the layers above the cut are trained (cut=1: the last linear layer); the teacher is
   a frozen copy of the ORIGINAL upper part. An unlearned mask marks forget samples the
   student still classifies correctly: their target is the teacher's logits on the
   adversarial activation; already-forgotten samples keep their own (detached) logits.
3. Knowledge distillation loss (alpha, T). Stops once every forget sample is misclassified,
   or at the epoch cap.

Lethe's addition: retain activations (a sample of them) are distilled from the teacher in the
same batches so RA/TA hold; in class scope the forgotten classes are masked out of those
targets so the classes become unpredicted, as in a model retrained without them.
The backbone stays in eval mode and is never touched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import torch

from ..architectures import SplitModel
from ..attack import partial_pgd
from ..cache import FeatureCache, embed
from ..loop import make_optimizer, run_loop
from ..types import Hooks, UnlearnData, UnlearnResult
from .common import freeze, kd_loss, mask_classes, wrong_class_targets
from .registry import register

__all__ = ["LAUConfig", "lau"]


@dataclass(frozen=True)
class LAUConfig:
    cut: int = 1
    """Layers above the cut are attacked against and trained (1 = the last layer, as the paper)."""
    eps: float = 2.0
    """L-inf radius of Partial-PGD around each forget activation (absolute, in activation
    units; with the built-in CNNs the penultimate ReLU activations peak around 10-25, and
    eps=2 makes the attack cross the boundary for 70-96% of forget samples, measured)."""
    step: float = 0.5
    """Partial-PGD step size (paper reading: 0.4-0.6, below eps)."""
    relative: bool = False
    """Read ``eps`` and ``step`` as multiples of the mean absolute retain activation at the
    cut (activation scales differ between cuts; the absolute defaults fit cut 1)."""
    steps: int = 10
    """Partial-PGD iterations."""
    alpha: float = 0.5
    """Weight of the KL term in the distillation loss."""
    temperature: float = 4.0
    """Distillation temperature T."""
    lr: float = 1e-2
    optimizer: str = "adam"
    epochs: int = 30
    """Epoch cap; training stops earlier once every forget sample is misclassified."""
    batch_size: int = 256
    """Forget samples per step (each step also takes ``retain_ratio`` times as many retain)."""
    retain_ratio: float = 1.0
    """Retain samples distilled per forget sample; 0 trains on the forget set alone."""
    min_retain: int = 1024
    """At least this many retain activations are used (when available)."""
    max_retain: int = 20000
    """At most this many retain activations are used."""
    seed: int = 0


@register("lau", LAUConfig)
def lau(
    model: SplitModel,
    data: UnlearnData,
    cfg: LAUConfig,
    *,
    device: torch.device,
    hooks: Hooks,
    cache: FeatureCache | None,
) -> UnlearnResult:
    model.eval()
    lower, upper = model.split(cfg.cut)
    freeze(lower)
    gen = torch.Generator().manual_seed(cfg.seed)
    n_forget, n_retain_all = len(data.forget), len(data.retain)
    n_retain = 0
    if cfg.retain_ratio > 0:
        n_retain = min(
            n_retain_all,
            cfg.max_retain,
            max(math.ceil(cfg.retain_ratio * n_forget), cfg.min_retain),
        )
    retain = data.retain.subset(
        torch.randperm(n_retain_all, generator=gen)[:n_retain].sort().values
    )

    hooks.progress("embed", 0.0)
    z_f, z_r = embed(model, data.forget, retain, cut=cfg.cut, device=device, cache=cache)
    nonneg = bool((z_f >= 0).all()) and bool((z_r >= 0).all())
    y_f = data.forget.y.to(device)

    teacher = freeze(copy.deepcopy(upper)).eval()
    hooks.progress("attack", 0.0)
    scale = float((z_r if len(z_r) else z_f).abs().mean()) if cfg.relative else 1.0
    z_adv = partial_pgd(
        teacher,
        z_f,
        y_f,
        eps=cfg.eps * scale,
        step=cfg.step * scale,
        steps=cfg.steps,
        nonneg=nonneg,
    )
    forgotten = data.forgotten_classes
    with torch.no_grad():
        t_adv = teacher(z_adv)
        attack_success = float((t_adv.argmax(1) != y_f).float().mean())
        t_adv = wrong_class_targets(mask_classes(t_adv, forgotten), y_f)
        t_ret = mask_classes(teacher(z_r), forgotten)

    opt = make_optimizer(upper.parameters(), cfg.optimizer, cfg.lr)
    state: dict[str, torch.Tensor] = {}

    def before_epoch(_epoch: int) -> bool:
        with torch.no_grad():
            own = upper(z_f)
        learned = own.argmax(1) == y_f
        state["target"] = torch.where(learned[:, None], t_adv, own.detach())
        return not bool(learned.any())

    def epoch_batches(_epoch: int) -> Iterator[tuple[torch.Tensor, ...]]:
        order = torch.randperm(n_forget, generator=gen).to(device)
        r_order = torch.randperm(max(n_retain, 1), generator=gen).to(device)
        r_per = max(1, math.ceil(cfg.retain_ratio * cfg.batch_size)) if n_retain else 0
        for i, lo in enumerate(range(0, n_forget, cfg.batch_size)):
            f_idx = order[lo : lo + cfg.batch_size]
            r_idx = r_order[(i * r_per) % max(n_retain, 1) :][:r_per] if n_retain else None
            yield (f_idx,) if r_idx is None else (f_idx, r_idx)

    def loss(batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        f_idx = batch[0]
        out = kd_loss(
            upper(z_f[f_idx]), state["target"][f_idx], alpha=cfg.alpha, temperature=cfg.temperature
        )
        if len(batch) > 1:
            r_idx = batch[1]
            out = out + kd_loss(
                upper(z_r[r_idx]), t_ret[r_idx], alpha=cfg.alpha, temperature=cfg.temperature
            )
        return out

    epochs = run_loop(
        optimizer=opt,
        epochs=cfg.epochs,
        epoch_batches=epoch_batches,
        loss=loss,
        hooks=hooks,
        phase="unlearn",
        before_epoch=before_epoch,
    )
    with torch.no_grad():
        remaining = int((upper(z_f).argmax(1) == y_f).sum())
    model.eval()
    return UnlearnResult(
        model,
        "lau",
        asdict(cfg),
        0.0,
        (),
        info={
            "epochs": epochs,
            "attack_success": attack_success,
            "still_correct": remaining,
            "retain_used": n_retain,
            "nonneg": nonneg,
        },
    )
