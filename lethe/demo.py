"""The demo model: a small CNN trained on scikit-learn's digits, registered as `digits-cnn`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import session_scope
from app.core.subjects import subject_ref
from app.registry import service as registry
from app.registry.models import Model
from lethe.specs import publish_specs
from workers.pipeline import load_dataset, resolve_device
from workers.runtime import Runtime

log = logging.getLogger("lethe.demo")

DEMO_MODEL = "digits-cnn"
DEMO_ARCH = "digits-cnn"
DEMO_DATASET = "sklearn-digits"
DEMO_PARAMS = {"seed": 0}


@dataclass(frozen=True)
class DemoArtifacts:
    checkpoint: bytes
    metrics: dict[str, Any]
    architecture: str = DEMO_ARCH
    dataset: str = DEMO_DATASET
    params: dict[str, Any] = field(default_factory=lambda: dict(DEMO_PARAMS))


def train_demo(
    seed: int = 0,
    threads: int = 1,
    *,
    architecture: str = DEMO_ARCH,
    dataset: str = DEMO_DATASET,
    params: dict[str, Any] | None = None,
    epochs: int | None = None,
) -> DemoArtifacts:
    """Train the demo CNN on the CPU (a few seconds) and measure it. The keywords train
    another built-in model the same way (``epochs``: instead of the recipe's)."""
    import unlearning as ul
    from unlearning.training import default_recipe

    params = dict(DEMO_PARAMS if params is None else params)
    device = resolve_device("cpu", threads)
    ds = load_dataset(dataset, params)
    recipe = default_recipe(architecture)
    if epochs is not None:
        recipe = replace(recipe, epochs=epochs)
    model = ul.train_model(architecture, ds, recipe=recipe, seed=seed, device=device)
    metrics = ul.evaluate(model, ds.unlearn_data([]), device=device)
    checkpoint = ul.save_checkpoint(model, arch_id=architecture)
    return DemoArtifacts(checkpoint, metrics, architecture, dataset, params)


def seed_demo(
    rt: Runtime, *, name: str = DEMO_MODEL, artifacts: DemoArtifacts | None = None, seed: int = 0
) -> bool:
    """Train and register the demo model unless it exists. Returns True if it was created."""
    publish_specs(rt.session_factory)  # lets the API check uploaded checkpoints
    with session_scope(rt.session_factory, None) as s:
        if s.scalar(select(Model.id).where(Model.name == name)) is not None:
            return False
    artifacts = artifacts or train_demo(seed, rt.settings.torch_threads)
    ds = load_dataset(artifacts.dataset, artifacts.params)
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
            architecture=artifacts.architecture,
            num_classes=int(ds.num_classes),
            dataset_id=artifacts.dataset,
            dataset_params=dict(artifacts.params),
            samples=rows,
            checkpoint_sha256=put.manifest.sha256,
            checkpoint_size=put.manifest.size,
            stored_bytes=put.new_bytes,
            metrics=metrics,
            actor="system:seed-demo",
            subject_identity_type="user_id" if ds.train.subjects else None,
        )
    log.info("registered %s v1 (TA %.2f)", name, metrics.get("TA", float("nan")))
    return True


DEMO_KEY_NAME = "demo"
DEMO_KEY_FILE = "demo-api-key"


@dataclass(frozen=True)
class DemoKey:
    key: str
    reused: bool
    revoked: list[str]
    """Prefixes of earlier demo keys revoked because their secret was no longer at hand."""


def demo_key(factory: sessionmaker[Session], data_dir: Path) -> DemoKey:
    """The demo's admin key: the one kept in `data_dir/demo-api-key` while it still works,
    so every `make run` prints the same key; otherwise a new one, and any other live key
    named "demo" is revoked (its secret is lost: only its hash is stored), so they never
    pile up. The file is readable by its owner only, beside the database it opens."""
    from app.audit import service as audit
    from app.auth.models import ApiKey
    from app.auth.service import authenticate, create_key, revoke_key

    path = data_dir / DEMO_KEY_FILE
    kept = path.read_text().strip() if path.exists() else ""
    with session_scope(factory, None) as session:
        if kept and authenticate(session=session, token=kept) is not None:
            return DemoKey(kept, True, [])
        live = session.scalars(
            select(ApiKey.prefix).where(ApiKey.name == DEMO_KEY_NAME, ApiKey.revoked_at.is_(None))
        ).all()
        for prefix in live:
            revoke_key(session=session, prefix=prefix)
            audit.append(
                session=session, type="key.revoked", actor="cli:demo", subject=f"key:{prefix}"
            )
        row, key = create_key(session=session, name=DEMO_KEY_NAME, scopes=["admin"])
        audit.append(
            session=session,
            type="key.created",
            actor="cli:demo",
            subject=f"key:{row.prefix}",
            data={"name": DEMO_KEY_NAME, "scopes": row.scopes},
        )
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return DemoKey(key, False, list(live))
