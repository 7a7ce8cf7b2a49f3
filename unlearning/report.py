"""What a verification report draws: true-label confidence distributions per group.

A membership-inference attack (the MIA metric) looks at one number per sample, the
softmax probability the model gives the sample's true label. After a good erasure the
forgotten samples' distribution looks like the held-out samples' (non-members), not like
the retained samples' (members). This module summarises those three distributions as
fixed-bin histograms and a few quantiles, small enough to store with a version's metrics
and to draw without any per-sample data:

    {"bins": [0.0, 0.1, ..., 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 1.0],
     "groups": {"forget":   {"n": 120, "counts": [...16], "quantiles": {"p5": ..., ...}},
                "retain":   {...},
                "held_out": {...}}}

The bins narrow towards 1: a trained classifier gives most members a confidence above
0.99, and that is where members and non-members differ. Held-out samples are the
validation split, the MIA's non-members (in class scope without
the forgotten classes, as in `evaluate`).
"""

from __future__ import annotations

import numpy as np
import torch

from .architectures import SplitModel
from .cache import FeatureCache, embed
from .metrics import true_label_confidence
from .types import UnlearnData

__all__ = ["EDGES", "QUANTILES", "confidence_histograms"]

EDGES = (
    0.0,
    0.1,
    0.2,
    0.3,
    0.4,
    0.5,
    0.6,
    0.7,
    0.8,
    0.9,
    0.95,
    0.98,
    0.99,
    0.995,
    0.998,
    0.999,
    1.0,
)
QUANTILES = (5, 25, 50, 75, 95)


def _summary(conf: np.ndarray, edges: np.ndarray) -> dict[str, object]:
    counts, _ = np.histogram(np.clip(conf, 0.0, 1.0), bins=edges)
    quantiles: dict[str, float | None] = {f"p{q}": None for q in QUANTILES}
    if len(conf):
        values = np.percentile(conf, QUANTILES)
        quantiles = {f"p{q}": round(float(v), 4) for q, v in zip(QUANTILES, values, strict=True)}
    return {"n": len(conf), "counts": [int(c) for c in counts], "quantiles": quantiles}


@torch.no_grad()
def confidence_histograms(
    model: SplitModel,
    data: UnlearnData,
    device: torch.device | str = "cpu",
    cache: FeatureCache | None = None,
) -> dict[str, object]:
    """Histograms (bins EDGES on [0, 1]) and quantiles of the true-label softmax
    probability ``model`` gives the forget, retain and held-out samples of ``data``."""
    model.eval()
    held_out = data.val.without_classes(data.forgotten_classes)
    splits = {"forget": data.forget, "retain": data.retain, "held_out": held_out}
    present = {name: s for name, s in splits.items() if len(s)}
    features = embed(model, *present.values(), cut=1, device=device, cache=cache)
    edges = np.asarray(EDGES)
    groups: dict[str, object] = {}
    for name, split in splits.items():
        conf = np.zeros(0)
        if name in present:
            z = features[list(present).index(name)]
            conf = true_label_confidence(model.head(z), split.y)
        groups[name] = _summary(conf, edges)
    return {"bins": [round(float(e), 4) for e in edges], "groups": groups}
