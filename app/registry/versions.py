"""Model versions are made here and nowhere else (`add_version`), and retired here
(`retire_superseded`) when a later version erased data they were trained on; a retired
version's blobs leave the store after the retention (`delete_retired_blobs`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.registry.models import Model, ModelVersion, TrainingSample
from models_store import ModelStore


def add_version(
    *,
    session: Session,
    model_id: int,
    number: int,
    parent_number: int | None,
    job_id: str | None,
    method: str,
    params: dict[str, Any],
    metrics: dict[str, Any],
    request_ids: list[str],
    checkpoint_sha256: str,
    checkpoint_size: int,
    stored_bytes: int,
    erased_sample_ids: Sequence[str] = (),
    created_at: datetime | None = None,
) -> ModelVersion:
    """The one place a version is made: version 1 at registration, each later one by a
    job's publish flow, which names the samples it forgot (`erased_sample_ids`). Those
    are marked erased in this version, and the version counts every sample erased in its
    lineage."""
    erased_count = 0
    if parent_number is not None:
        session.execute(
            update(TrainingSample)
            .where(
                TrainingSample.model_id == model_id,
                TrainingSample.sample_id.in_(erased_sample_ids),
                TrainingSample.erased_in_version.is_(None),
            )
            .values(erased_in_version=number)
        )
        erased_count = (
            session.scalar(
                select(func.count())
                .select_from(TrainingSample)
                .where(
                    TrainingSample.model_id == model_id,
                    TrainingSample.erased_in_version.is_not(None),
                )
            )
            or 0
        )
    version = ModelVersion(
        model_id=model_id,
        number=number,
        parent_number=parent_number,
        job_id=job_id,
        method=method,
        params=params,
        metrics=metrics,
        request_ids=request_ids,
        erased_count=erased_count,
        checkpoint_sha256=checkpoint_sha256,
        checkpoint_size=checkpoint_size,
        stored_bytes=stored_bytes,
    )
    if created_at is not None:
        version.created_at = created_at
    session.add(version)
    return version


def retire_superseded(
    *, session: Session, model: Model, version: ModelVersion, actor: str, now: datetime
) -> list[int]:
    """Retire every earlier live version of `model` trained on a sample that `version`
    erased for the first time (its `erased_in_version` is this version). Versions form one
    line, so such a sample was in the training data of every earlier version; a version
    that erased nothing new (a request for samples already erased) retires nothing.
    Returns the retired numbers; each retirement is audited."""
    newly_erased = session.scalar(
        select(
            exists().where(
                TrainingSample.model_id == model.id,
                TrainingSample.erased_in_version == version.number,
            )
        )
    )
    if not newly_erased:
        return []
    retired = list(
        session.scalars(
            select(ModelVersion)
            .where(
                ModelVersion.model_id == model.id,
                ModelVersion.number < version.number,
                ModelVersion.retired_at.is_(None),
            )
            .order_by(ModelVersion.number)
        )
    )
    for old in retired:
        old.retired_at, old.superseded_by = now, version.number
        audit.append(
            session=session,
            type="version.retired",
            actor=actor,
            subject=f"model:{model.name}",
            data={
                "version": old.number,
                "superseded_by": version.number,
                "reason": "trained on data a later version erased",
            },
        )
    return [v.number for v in retired]


def delete_retired_blobs(
    *, session: Session, store: ModelStore, retention_days: float, now: datetime
) -> int:
    """Delete from the store the checkpoints of versions retired at least `retention_days`
    ago, keeping every blob a version still kept (live, or retired more recently) shares:
    a head-only lineage loses its heads, never the backbone. Returns the blobs deleted."""
    cutoff = now - timedelta(days=retention_days)
    due = list(
        session.scalars(
            select(ModelVersion)
            .where(
                ModelVersion.retired_at.is_not(None),
                ModelVersion.retired_at <= cutoff,
                ModelVersion.blobs_deleted_at.is_(None),
            )
            .with_for_update(skip_locked=True)
        )
    )
    if not due:
        return 0
    kept = session.scalars(
        select(ModelVersion.checkpoint_sha256).where(
            ModelVersion.blobs_deleted_at.is_(None),
            ModelVersion.id.not_in([v.id for v in due]),
        )
    )
    removal = store.delete_checkpoints([v.checkpoint_sha256 for v in due], keep=list(kept))
    names = {model_id: name for model_id, name in session.execute(select(Model.id, Model.name))}
    for v in due:
        v.blobs_deleted_at = now
        audit.append(
            session=session,
            type="version.blobs_deleted",
            actor="system:housekeeping",
            subject=f"model:{names[v.model_id]}",
            data={"version": v.number, "checkpoint_sha256": v.checkpoint_sha256},
        )
    audit.append(
        session=session,
        type="store.blobs_deleted",
        actor="system:housekeeping",
        subject=None,
        data={"blobs": len(removal.blobs), "bytes": removal.bytes},
    )
    return len(removal.blobs)
