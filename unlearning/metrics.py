"""The standard unlearning metrics (SalUn / l1-sparse protocol), in points (0-100).

- UA: 100 - accuracy on the forget set.  RA: accuracy on the retain set.
- TA: accuracy on the test set (class scope: test samples of the other classes).
- MIA: an RBF SVC (C=3, gamma="auto") on the true-label softmax probability, trained on
  retain (members) vs val (non-members) in equal counts; the share of forget samples it
  calls non-members. In class scope val samples of the forgotten classes are left out.
- probe_UA: UA of a fresh linear probe (logistic regression) trained on retain embeddings.
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

__all__ = ["GAP_KEYS", "avg_gap", "evaluate", "mia_efficacy", "probe_ua"]

GAP_KEYS = ("UA", "RA", "TA", "MIA")


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
    seed: int = 0,
    max_train: int = 5000,
) -> float:
    """UA of a logistic-regression probe trained on (up to ``max_train``) retain embeddings."""
    if len(forget_y) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    if len(retain_y) > max_train:
        keep = rng.choice(len(retain_y), max_train, replace=False)
        retain_z, retain_y = retain_z[keep], retain_y[keep]
    scaler = StandardScaler().fit(retain_z)
    clf = LogisticRegression(max_iter=500).fit(scaler.transform(retain_z), retain_y)
    return float(100 - (clf.predict(scaler.transform(forget_z)) == forget_y).mean() * 100)


def _acc(logits: torch.Tensor, y: torch.Tensor) -> float:
    if len(y) == 0:
        return float("nan")
    return float((logits.argmax(1).cpu() == y).float().mean() * 100)


def _true_conf(logits: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    p = F.softmax(logits.float(), dim=1).cpu()
    return p.gather(1, y[:, None]).flatten().numpy()


def _without(split: Split, classes: tuple[int, ...]) -> Split:
    if not classes:
        return split
    return split.subset(~torch.isin(split.y, torch.tensor(classes, dtype=torch.long)))


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

    Logits come from penultimate embeddings (through ``cache`` when given), so evaluating
    several head-only versions of one backbone costs one backbone pass.
    """
    model.eval()
    if len(data.forget) == 0:
        return _evaluate_without_forget(model, data, device)
    test, val = (
        _without(data.test, data.forgotten_classes),
        _without(data.val, data.forgotten_classes),
    )
    z_r, z_f, z_v, z_t = embed(
        model, data.retain, data.forget, val, test, cut=1, device=device, cache=cache
    )
    head = model.head
    l_r, l_f, l_v, l_t = (head(z) for z in (z_r, z_f, z_v, z_t))
    ua = 100 - _acc(l_f, data.forget.y)
    mia = mia_efficacy(
        _true_conf(l_r, data.retain.y),
        _true_conf(l_v, val.y),
        _true_conf(l_f, data.forget.y),
        seed=seed,
    )
    probe = probe_ua(
        z_r.cpu().numpy(),
        data.retain.y.numpy(),
        z_f.cpu().numpy(),
        data.forget.y.numpy(),
        seed=seed,
    )
    return {
        "UA": ua,
        "RA": _acc(l_r, data.retain.y),
        "TA": _acc(l_t, test.y),
        "MIA": mia,
        "probe_UA": probe,
        "VA": _acc(l_v, val.y),
    }


@torch.no_grad()
def _evaluate_without_forget(
    model: SplitModel, data: UnlearnData, device: torch.device | str
) -> dict[str, float | None]:
    """A model with nothing to forget (e.g. as registered): forget-set metrics are None."""
    model.eval().to(device)

    def acc(split: Split) -> float:
        logits = torch.cat([model(x.to(device)).cpu() for x in split.x.split(4096)])
        return _acc(logits, split.y)

    return {
        "UA": None,
        "RA": acc(data.retain),
        "TA": acc(data.test),
        "MIA": None,
        "probe_UA": None,
        "VA": acc(data.val),
    }
