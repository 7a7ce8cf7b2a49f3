"""Registered models, versions, training-set manifests and aliases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.callbacks import service as callbacks
from app.core.bulk import bulk_insert, existing
from app.core.db import utcnow
from app.core.errors import CheckpointMismatch, Conflict, NotFound, Unprocessable
from app.registry import versions
from app.registry.models import (
    Alias,
    AliasMove,
    ArchitectureSpec,
    Model,
    ModelVersion,
    TrainingSample,
)
from models_store.safetensors_format import HeaderTensor

PRODUCTION = "production"


@dataclass(frozen=True)
class SampleRow:
    sample_id: str
    label: int
    subject_ref: str | None = None


@dataclass(frozen=True)
class ModelRef:
    """What the request path needs of a model: its id and name. Models are never renamed
    or deleted, so these are cached for the life of the process (per database)."""

    id: int
    name: str


_refs: dict[tuple[Any, int | str], ModelRef] = {}


def model_ref(
    *, session: Session, name: str | None = None, id: int | None = None
) -> ModelRef | None:
    """The model with this name (or id), from the cache or the database; None if none."""
    url = session.get_bind().engine.url
    key: tuple[Any, int | str] = (url, name) if name is not None else (url, id or 0)
    ref = _refs.get(key)
    if ref is None:
        where = Model.name == name if name is not None else Model.id == id
        row = session.execute(select(Model.id, Model.name).where(where)).one_or_none()
        if row is None:
            return None  # not cached: the model may be registered a moment later
        ref = ModelRef(row.id, row.name)
        _refs[(url, ref.name)] = _refs[(url, ref.id)] = ref
    return ref


def get_model(*, session: Session, name: str) -> Model:
    model = session.scalar(select(Model).where(Model.name == name))
    if model is None:
        raise NotFound(f"no model named {name!r}; GET /v1/models lists the registered ones")
    return model


def list_models(*, session: Session) -> list[Model]:
    return list(session.scalars(select(Model).order_by(Model.name)))


def latest_version(*, session: Session, model_id: int) -> ModelVersion | None:
    return session.scalar(
        select(ModelVersion)
        .where(ModelVersion.model_id == model_id)
        .order_by(ModelVersion.number.desc())
        .limit(1)
    )


def get_version(*, session: Session, model: Model, number: int) -> ModelVersion:
    version = session.scalar(
        select(ModelVersion).where(ModelVersion.model_id == model.id, ModelVersion.number == number)
    )
    if version is None:
        raise NotFound(f"model {model.name!r} has no version {number}")
    return version


def list_versions(*, session: Session, model: Model) -> list[ModelVersion]:
    return list(
        session.scalars(
            select(ModelVersion)
            .where(ModelVersion.model_id == model.id)
            .order_by(ModelVersion.number)
        )
    )


def register_model(
    *,
    session: Session,
    name: str,
    architecture: str,
    num_classes: int,
    dataset_id: str,
    dataset_params: dict[str, Any],
    samples: Iterable[SampleRow],
    checkpoint_sha256: str,
    checkpoint_size: int,
    stored_bytes: int,
    metrics: dict[str, Any],
    actor: str,
    auto_promote: bool = True,
) -> Model:
    """Register a model with version 1 and its training-set manifest (inserted in bulk)."""
    if session.scalar(select(Model.id).where(Model.name == name)) is not None:
        raise Conflict(f"a model named {name!r} already exists")
    model = Model(
        name=name,
        architecture=architecture,
        num_classes=num_classes,
        dataset_id=dataset_id,
        dataset_params=dataset_params,
        auto_promote=auto_promote,
    )
    session.add(model)
    session.flush()
    count = _insert_samples(session, model.id, samples)
    versions.add_version(
        session=session,
        model_id=model.id,
        number=1,
        parent_number=None,
        job_id=None,
        method="registered",
        params={},
        metrics=metrics,
        request_ids=[],
        checkpoint_sha256=checkpoint_sha256,
        checkpoint_size=checkpoint_size,
        stored_bytes=stored_bytes,
    )
    move_alias(session=session, model=model, alias=PRODUCTION, number=1, actor=actor)
    audit.append(
        session=session,
        type="model.registered",
        actor=actor,
        subject=f"model:{name}",
        data={
            "architecture": architecture,
            "dataset": dataset_id,
            "samples": count,
            "checkpoint_sha256": checkpoint_sha256,
        },
    )
    return model


def move_alias(*, session: Session, model: Model, alias: str, number: int, actor: str) -> Alias:
    row = session.get(Alias, (model.id, alias))
    previous = row.version_number if row else None
    if row is None:
        row = Alias(model_id=model.id, name=alias, version_number=number)
        session.add(row)
    else:
        row.version_number, row.updated_at = number, utcnow()
    session.add(
        AliasMove(
            model_id=model.id, alias=alias, from_version=previous, to_version=number, actor=actor
        )
    )
    audit.append(
        session=session,
        type="alias.moved",
        actor=actor,
        subject=f"model:{model.name}",
        data={"alias": alias, "from": previous, "to": number},
    )
    callbacks.model_event(
        session=session,
        model=model,
        type=callbacks.ALIAS_MOVED,
        data={"alias": alias, "from": previous, "to": number},
    )
    return row


def unknown_sample_ids(*, session: Session, model_id: int, sample_ids: Sequence[str]) -> list[str]:
    """Ids in `sample_ids` that are not in the model's training set (order kept)."""
    known = existing(
        session, TrainingSample.sample_id, sample_ids, TrainingSample.model_id == model_id
    )
    return [s for s in sample_ids if s not in known]


def samples_of_subjects(
    *, session: Session, model_id: int, subject_refs: Sequence[str]
) -> list[str]:
    return list(
        session.scalars(
            select(TrainingSample.sample_id)
            .where(
                TrainingSample.model_id == model_id,
                TrainingSample.subject_ref.in_(list(subject_refs)),
            )
            .order_by(TrainingSample.sample_id)
        )
    )


def erased_sample_ids(*, session: Session, model_id: int) -> list[str]:
    return list(
        session.scalars(
            select(TrainingSample.sample_id).where(
                TrainingSample.model_id == model_id, TrainingSample.erased_in_version.is_not(None)
            )
        )
    )


def count_samples(*, session: Session, model_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(TrainingSample)
            .where(TrainingSample.model_id == model_id)
        )
        or 0
    )


# --- registration helpers -----------------------------------------------------------------


def put_architecture_spec(*, session: Session, arch_id: str, tensors: dict[str, Any]) -> None:
    row = session.get(ArchitectureSpec, arch_id)
    if row is None:
        session.add(ArchitectureSpec(arch_id=arch_id, tensors=tensors))
    elif row.tensors != tensors:
        row.tensors = tensors


def architecture_spec(*, session: Session, arch_id: str) -> dict[str, Any]:
    row = session.get(ArchitectureSpec, arch_id)
    if row is None:
        known = list(session.scalars(select(ArchitectureSpec.arch_id).order_by("arch_id")))
        raise Unprocessable(
            f"unknown architecture {arch_id!r}; known: {known} (workers publish their "
            "architectures with `lethe architectures publish`)",
            errors=[{"pointer": "/architecture", "detail": "unknown architecture"}],
        )
    return row.tensors


def check_checkpoint(
    tensors: Sequence[HeaderTensor], spec: dict[str, Any], *, arch_id: str, num_classes: int
) -> None:
    """Refuse a checkpoint whose tensor names, shapes or dtypes differ from the spec."""
    expected = {
        name: (d["dtype"], tuple(num_classes if x == "num_classes" else x for x in d["shape"]))
        for name, d in spec.items()
    }
    got = {t.name: (t.dtype, tuple(t.shape)) for t in tensors}
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    wrong = [
        {"tensor": n, "expected": [*expected[n][1], expected[n][0]], "got": [*got[n][1], got[n][0]]}
        for n in sorted(set(expected) & set(got))
        if expected[n] != got[n]
    ]
    if missing or unexpected or wrong:
        raise CheckpointMismatch(
            f"the checkpoint does not match architecture {arch_id!r} with {num_classes} "
            f"classes: {len(missing)} missing, {len(unexpected)} unexpected and {len(wrong)} "
            "mismatched tensors",
            missing=missing[:50],
            unexpected=unexpected[:50],
            mismatched=wrong[:50],
        )


def _insert_samples(session: Session, model_id: int, samples: Iterable[SampleRow]) -> int:
    columns = ("model_id", "sample_id", "label", "subject_ref")
    rows = ((model_id, s.sample_id, s.label, s.subject_ref) for s in samples)
    return bulk_insert(session, TrainingSample.__table__, columns, rows)  # type: ignore[arg-type]


# --- aliases ------------------------------------------------------------------------------


def get_alias(*, session: Session, model: Model, alias: str) -> Alias:
    row = session.get(Alias, (model.id, alias))
    if row is None:
        raise NotFound(f"model {model.name!r} has no alias {alias!r}")
    return row


def set_alias(*, session: Session, model: Model, alias: str, number: int, actor: str) -> Alias:
    """Point `alias` at version `number` (recorded in its history); a no-op if it already is."""
    get_version(session=session, model=model, number=number)
    row = session.get(Alias, (model.id, alias))
    if row is not None and row.version_number == number:
        return row
    return move_alias(session=session, model=model, alias=alias, number=number, actor=actor)


def alias_history(*, session: Session, model: Model, alias: str) -> list[AliasMove]:
    rows = list(
        session.scalars(
            select(AliasMove)
            .where(AliasMove.model_id == model.id, AliasMove.alias == alias)
            .order_by(AliasMove.id)
        )
    )
    if not rows:
        raise NotFound(f"model {model.name!r} has no alias {alias!r}")
    return rows
