"""The demo model: a small CNN trained on scikit-learn's digits, registered as `digits-cnn`."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from app.core.db import session_scope
from app.core.subjects import subject_ref
from app.registry import service as registry
from app.registry.models import Model
from lethe.specs import publish_specs
from workers.pipeline import load_dataset, resolve_device
from workers.runtime import Runtime

log = logging.getLogger("lethe.demo")

DEMO_MODEL = "digits-cnn"
DEMO_DATASET = "sklearn-digits"
DEMO_PARAMS = {"seed": 0}


@dataclass(frozen=True)
class DemoArtifacts:
    checkpoint: bytes
    metrics: dict[str, Any]


def train_demo(seed: int = 0, threads: int = 1) -> DemoArtifacts:
    """Train the demo CNN on the CPU (a few seconds) and measure it."""
    import unlearning as ul

    device = resolve_device("cpu", threads)
    ds = load_dataset(DEMO_DATASET, DEMO_PARAMS)
    model = ul.train_model("digits-cnn", ds, seed=seed, device=device)
    metrics = ul.evaluate(model, ds.unlearn_data([]), device=device)
    return DemoArtifacts(ul.save_checkpoint(model, arch_id="digits-cnn"), metrics)


def seed_demo(
    rt: Runtime, *, name: str = DEMO_MODEL, artifacts: DemoArtifacts | None = None, seed: int = 0
) -> bool:
    """Train and register the demo model unless it exists. Returns True if it was created."""
    publish_specs(rt.session_factory)  # lets the API check uploaded checkpoints
    with session_scope(rt.session_factory, None) as s:
        if s.scalar(select(Model.id).where(Model.name == name)) is not None:
            return False
    artifacts = artifacts or train_demo(seed, rt.settings.torch_threads)
    ds = load_dataset(DEMO_DATASET, DEMO_PARAMS)
    metrics = artifacts.metrics
    put = rt.store.put_checkpoint(artifacts.checkpoint)
    secret = rt.settings.secret_key.get_secret_value()
    subjects = ds.train.subjects or (None,) * len(ds.train)
    rows = [
        registry.SampleRow(sid, int(label), subject_ref(secret, "user_id", subj) if subj else None)
        for sid, label, subj in zip(ds.train.ids, ds.train.y.tolist(), subjects, strict=True)
    ]
    with session_scope(rt.session_factory, None) as s:
        registry.register_model(
            session=s,
            name=name,
            architecture="digits-cnn",
            num_classes=int(ds.num_classes),
            dataset_id=DEMO_DATASET,
            dataset_params=dict(DEMO_PARAMS),
            samples=rows,
            checkpoint_sha256=put.manifest.sha256,
            checkpoint_size=put.manifest.size,
            stored_bytes=put.new_bytes,
            metrics=metrics,
            actor="system:seed-demo",
        )
    log.info("registered %s v1 (TA %.2f)", name, metrics.get("TA", float("nan")))
    return True
