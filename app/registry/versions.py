"""Model versions are made here and nowhere else (`add_version`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.registry.models import ModelVersion, TrainingSample


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
