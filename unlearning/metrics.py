"""The standard unlearning metrics (SalUn / l1-sparse protocol), in points (0-100).

- UA: 100 - accuracy on the forget set.  RA: accuracy on the retain set.
- TA: accuracy on the test set (class scope: test samples of the other classes).
- MIA: an RBF SVC (C=3, gamma="auto") on the true-label softmax probability, trained on
  retain (members) vs **test** (non-members) in equal counts, as the OPTML code does; the
  share of forget samples it calls non-members. Never ``val``: methods calibrate on val, and
  a method judged on its own calibration split flatters itself (measured: 0.5-3 MIA points).
  In class scope test samples of the forgotten classes are left out.
- probe_UA: UA of a fresh linear probe (logistic regression) on the penultimate embeddings,
  trained on retain embeddings plus the held-out (test) samples of the forgotten classes, so
  it can name a forgotten class if the backbone still separates it; compare with retrain's.
- class_TA: test accuracy on the classes the forget set removed entirely or mostly (at least
  ``MOSTLY_FORGOTTEN`` of their training samples): a retrained model loses such classes.
- avg_gap: mean |method - retrain| over UA, RA, TA, MIA.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from .architectures import SplitModel
from .cache import FeatureCache, embed
from .types import Split, UnlearnData

__all__ = [
    "GAP_KEYS",
    "MIN_VAL",
    "MOSTLY_FORGOTTEN",
    "avg_gap",
    "check_forgetting",
    "evaluate",
    "mia_efficacy",
    "mostly_forgotten_classes",
    "probe_only",
    "probe_ua",
]

GAP_KEYS = ("UA", "RA", "TA", "MIA")

MIN_VAL = 100
"""Fewest held-out (``val``) samples a model may be registered with, and that the calibrated
method accepts. Calibration reads the held-out confidence distribution and the gate compares
forget-set accuracy with held-out accuracy; with n held-out samples at ~90 % accuracy the
standard error of that accuracy is 30/sqrt(n) points: 3 points at n = 100, already the size of
the gaps being calibrated (a retrained model's UA is 3-11 points on the benchmarks). Below
100 the calibration target is noise."""

MOSTLY_FORGOTTEN = 0.5
"""A class of which the forget set holds at least this share of the training samples counts
as (mostly) forgotten: a model retrained on the small remnant loses most of it on held-out
data (BENCHMARKS.md, "Most of a class")."""


def mostly_forgotten_classes(
    data: UnlearnData, share: float = MOSTLY_FORGOTTEN
) -> dict[int, float]:
    """Class -> share of its training samples still retained, for classes the forget set
    holds at least ``share`` of (whole classes included, with 0.0)."""
    f = torch.bincount(data.forget.y, minlength=data.num_classes).double()
    r = torch.bincount(data.retain.y, minlength=data.num_classes).double()
    total = f + r
    out: dict[int, float] = {}
    for k in range(data.num_classes):
        if f[k] > 0 and f[k] >= share * total[k]:
            out[k] = float(r[k] / total[k])
    return out


def avg_gap(method_metrics: Mapping[str, float], retrain_metrics: Mapping[str, float]) -> float:
    """Mean absolute difference over UA, RA, TA, MIA, in points."""
    return float(np.mean([abs(method_metrics[k] - retrain_metrics[k]) for k in GAP_KEYS]))


def mia_efficacy(
    member_conf: np.ndarray,
    nonmember_conf: np.ndarray,
    target_conf: np.ndarray,
    *,
    seed: int = 0,
    max_per_class: int = 5000,
) -> float:
    """Share (x100) of ``target_conf`` the member/non-member SVC calls non-members."""
    rng = np.random.default_rng(seed)
    n = min(len(member_conf), len(nonmember_conf), max_per_class)
    if n == 0 or len(target_conf) == 0:
        return float("nan")
    mem = rng.choice(np.asarray(member_conf), n, replace=False)
    non = rng.choice(np.asarray(nonmember_conf), n, replace=False)
    x = np.concatenate([mem, non]).reshape(-1, 1)
    y = np.concatenate([np.ones(n), np.zeros(n)])
    svc = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    pred = svc.predict(np.asarray(target_conf).reshape(-1, 1))
    return float((pred == 0).mean() * 100)


def probe_ua(
    retain_z: np.ndarray,
    retain_y: np.ndarray,
    forget_z: np.ndarray,
    forget_y: np.ndarray,
    *,
    heldout_z: np.ndarray | None = None,
    heldout_y: np.ndarray | None = None,
    seed: int = 0,
    max_train: int = 5000,
) -> float:
    """UA of a logistic-regression probe trained on (up to ``max_train``) retain embeddings
    plus ``heldout_z``/``heldout_y`` (held-out samples of the forgotten classes, so the probe
    can recover a class the backbone still separates)."""
    if len(forget_y) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    if len(retain_y) > max_train:
        keep = rng.choice(len(retain_y), max_train, replace=False)
        retain_z, retain_y = retain_z[keep], retain_y[keep]
    if heldout_z is not None and heldout_y is not None and len(heldout_y):
        retain_z = np.concatenate([retain_z, heldout_z])
        retain_y = np.concatenate([retain_y, heldout_y])
    scaler = StandardScaler().fit(retain_z)
    clf = LogisticRegression(max_iter=500).fit(scaler.transform(retain_z), retain_y)
    return float(100 - (clf.predict(scaler.transform(forget_z)) == forget_y).mean() * 100)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return float((logits.argmax(1).cpu() == y).float().mean() * 100)


def true_label_confidence(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    p = F.softmax(logits.float(), dim=1).cpu()
    return p.gather(1, y[:, None]).flatten().numpy()


@torch.no_grad()
def evaluate(
    model: SplitModel,
    data: UnlearnData,
    device: torch.device | str = "cpu",
    cache: FeatureCache | None = None,
    *,
    seed: int = 0,
) -> dict[str, float | None]:
    """UA, RA, TA, MIA, probe_UA (plus forget/val accuracy) of ``model`` on ``data``.

    Where the request forgets whole classes, ``class_UA`` is the UA of their samples and, if
    it also holds single samples (scope ``mixed``), ``sample_UA`` that of the rest.

    Logits come from penultimate embeddings (through ``cache`` when given), so evaluating
    several head-only versions of one backbone costs one backbone pass.
    """
    model.eval()
    if len(data.forget) == 0:
        return _evaluate_without_forget(model, data, device, cache)
    forgotten = data.forgotten_classes
    test, val = data.test.without_classes(forgotten), data.val.without_classes(forgotten)
    mostly = tuple(mostly_forgotten_classes(data))
    z_r, z_f, z_v, z_t, z_all_t = embed(
        model, data.retain, data.forget, val, test, data.test, cut=1, device=device, cache=cache
    )
    head = model.head
    l_r, l_f, l_v, l_t, l_all_t = (head(z) for z in (z_r, z_f, z_v, z_t, z_all_t))
    ua = 100 - _acc(l_f, data.forget.y)
    mia = mia_efficacy(
        true_label_confidence(l_r, data.retain.y),
        true_label_confidence(l_t, test.y),
        true_label_confidence(l_f, data.forget.y),
        seed=seed,
    )
    in_forgotten = torch.isin(data.test.y, torch.tensor(forgotten, dtype=torch.long))
    probe = probe_ua(
        z_r.cpu().numpy(),
        data.retain.y.numpy(),
        z_f.cpu().numpy(),
        data.forget.y.numpy(),
        heldout_z=z_all_t[in_forgotten.to(z_all_t.device)].cpu().numpy(),
        heldout_y=data.test.y[in_forgotten].numpy(),
        seed=seed,
    )
    in_mostly = torch.isin(data.test.y, torch.tensor(mostly, dtype=torch.long))
    return {
        **_scope_parts(l_f, data.forget.y, forgotten),
        "UA": ua,
        "RA": _acc(l_r, data.retain.y),
        "TA": _acc(l_t, test.y),
        "MIA": mia,
        "probe_UA": probe,
        "VA": _acc(l_v, val.y),
        "FA": 100 - ua,
        "class_TA": _acc(l_all_t[in_mostly.to(l_all_t.device)], data.test.y[in_mostly])
        if mostly
        else None,
    }


def _scope_parts(
    logits: torch.Tensor, y: torch.Tensor, forgotten: tuple[int, ...]
) -> dict[str, float]:
    """UA of the forget set's two parts where it holds whole classes: ``class_UA`` over the
    samples of the forgotten classes and, in a mixed request, ``sample_UA`` over the rest
    (the gate judges each part by its own rule; the overall UA mixes them)."""
    if not forgotten:
        return {}
    in_class = torch.isin(y, torch.tensor(forgotten, dtype=torch.long))
    if not bool(in_class.any()):
        return {}
    mask = in_class.to(logits.device)
    parts = {"class_UA": 100 - _acc(logits[mask], y[in_class])}
    if not bool(in_class.all()):
        parts["sample_UA"] = 100 - _acc(logits[~mask], y[~in_class])
    return parts


@torch.no_grad()
def _evaluate_without_forget(
    model: SplitModel,
    data: UnlearnData,
    device: torch.device | str,
    cache: FeatureCache | None = None,
) -> dict[str, float | None]:
    """A model with nothing to forget (e.g. as registered): forget-set metrics are None.
    With a ``cache`` (or splits read from a source) logits come from the cached
    penultimate activations, so a registration that warmed the cache reads no input again."""
    model.eval().to(device)
    splits = (data.retain, data.test, data.val)
    if cache is not None or any(s.source is not None for s in splits):
        z = embed(model, *splits, cut=1, device=device, cache=cache)
        ra, ta, va = (_acc(model.head(zi), s.y) for zi, s in zip(z, splits, strict=True))
    else:

        def acc(split: Split) -> float:
            logits = torch.cat([model(x.to(device)).cpu() for x in split.x.split(4096)])
            return _acc(logits, split.y)

        ra, ta, va = (acc(s) for s in splits)
    return {"UA": None, "RA": ra, "TA": ta, "MIA": None, "probe_UA": None, "VA": va}


@torch.no_grad()
def probe_only(
    model: SplitModel,
    data: UnlearnData,
    device: torch.device | str = "cpu",
    cache: FeatureCache | None = None,
    *,
    seed: int = 0,
) -> float:
    """``probe_UA`` alone (see ``evaluate``): the depth policy's check."""
    model.eval()
    z_r, z_f, z_t = embed(
        model, data.retain, data.forget, data.test, cut=1, device=device, cache=cache
    )
    held = torch.isin(data.test.y, torch.tensor(data.forgotten_classes, dtype=torch.long))
    return probe_ua(
        z_r.cpu().numpy(),
        data.retain.y.numpy(),
        z_f.cpu().numpy(),
        data.forget.y.numpy(),
        heldout_z=z_t[held.to(z_t.device)].cpu().numpy(),
        heldout_y=data.test.y[held].numpy(),
        seed=seed,
    )


def check_forgetting(
    metrics: Mapping[str, float | None],
    parent: Mapping[str, float | None],
    *,
    forget_count: int,
    val_count: int,
    min_closed: float = 0.25,
    z: float = 2.0,
) -> str | None:
    """None if the result's forget-set behaviour may be published, else why not.

    Retrain-like forgetting is *required* when the parent remembers its forget set: its
    forget-set accuracy ``FA`` exceeds its held-out accuracy ``VA`` by more than ``z``
    standard errors of that difference (binomial, with ``forget_count`` and ``val_count``
    samples). A model retrained without the samples would be near ``VA`` on them. The result
    is then refused when it closed less than ``min_closed`` of that gap: its forget-set
    behaviour is indistinguishable from the parent's. A result whose forget accuracy is
    missing (nothing to forget) passes.
    """
    fa, fa_p, va_p = metrics.get("FA"), parent.get("FA"), parent.get("VA")
    if fa is None and metrics.get("UA") is not None:
        fa = 100 - float(metrics["UA"] or 0.0)
    if fa_p is None and parent.get("UA") is not None:
        fa_p = 100 - float(parent["UA"] or 0.0)
    if fa is None or fa_p is None or va_p is None or forget_count == 0 or val_count == 0:
        return None
    if any(isinstance(v, float) and np.isnan(v) for v in (fa, fa_p, va_p)):
        return None
    pooled = min(max((fa_p + va_p) / 200, 0.01), 0.99)
    se = 100 * float(np.sqrt(pooled * (1 - pooled) * (1 / forget_count + 1 / val_count)))
    gap = fa_p - va_p
    if gap <= z * se:
        return None  # the parent's forget set already looks held out: nothing to detect
    closed = (fa_p - fa) / gap
    if closed >= min_closed:
        return None
    return (
        f"forget-set accuracy {fa:.2f} is indistinguishable from the parent's {fa_p:.2f}: the "
        f"parent remembered these {forget_count} samples ({gap:.2f} points above its held-out "
        f"accuracy {va_p:.2f}, more than {z:g} standard errors of {se:.2f}) and the result "
        f"closed {closed * 100:.0f}% of that gap (at least {min_closed * 100:.0f}% required); "
        f"a model retrained without them would be near the held-out accuracy"
    )
