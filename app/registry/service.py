"""Registered models, versions, training-set manifests and aliases."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from app.audit import service as audit
from app.callbacks import service as callbacks
from app.core.bulk import bulk_insert, existing
from app.core.db import utcnow
from app.core.errors import (
    CheckpointMismatch,
    Conflict,
    NotFound,
    RetiredAliasTarget,
    Unprocessable,
)
from app.jobs.models import REGISTER, Job
from app.registry import versions
from app.registry.models import (
    READY,
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
    subject_identity_type: str | None = None


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
        row = session.execute(
            select(Model.id, Model.name, Model.subject_identity_type).where(where)
        ).one_or_none()
        if row is None:
            return None  # not cached: the model may be registered a moment later
        ref = ModelRef(row.id, row.name, row.subject_identity_type)
        _refs[(url, ref.name)] = _refs[(url, ref.id)] = ref
    return ref


_ready: set[tuple[Any, int]] = set()


def model_status(*, session: Session, model_id: int) -> tuple[str, str | None]:
    """(status, reason) of a model; `ready` is final, so it is remembered per process."""
    key = (session.get_bind().engine.url, model_id)
    if key in _ready:
        return READY, None
    row = session.execute(
        select(Model.status, Model.status_reason).where(Model.id == model_id)
    ).one()
    if row.status == READY:
        _ready.add(key)
    return row.status, row.status_reason


def get_model(*, session: Session, name: str) -> Model:
    model = session.scalar(select(Model).where(Model.name == name))
    if model is None:
        raise NotFound(f"no model named {name!r}; GET /v1/models lists the registered ones")
    return model


def registration_job(*, session: Session, model: Model) -> Job | None:
    """The model's registration job, if it was registered through one."""
    return registration_jobs(session=session, models=[model]).get(model.id)


def registration_jobs(*, session: Session, models: list[Model]) -> dict[int, Job]:
    """The newest registration job of each of `models` registered through one, by model id."""
    ids = [m.id for m in models if m.registration is not None]
    jobs: dict[int, Job] = {}
    if ids:
        for job in session.scalars(
            select(Job)
            .where(Job.model_id.in_(ids), Job.kind == REGISTER)
            .order_by(Job.created_at.desc())
        ):
            jobs.setdefault(job.model_id, job)
    return jobs


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
    subject_identity_type: str | None = None,
) -> Model:
    """Register a model with version 1 and its training-set manifest (inserted in bulk).
    `subject_identity_type` is the type the samples' subject refs were hashed under."""
    model = create_model(
        session=session,
        name=name,
        architecture=architecture,
        num_classes=num_classes,
        dataset_id=dataset_id,
        dataset_params=dataset_params,
        samples=samples,
        auto_promote=auto_promote,
        subject_identity_type=subject_identity_type,
    )
    publish_first_version(
        session=session,
        model=model,
        checkpoint_sha256=checkpoint_sha256,
        checkpoint_size=checkpoint_size,
        stored_bytes=stored_bytes,
        metrics=metrics,
        actor=actor,
    )
    return model


def create_model(
    *,
    session: Session,
    name: str,
    architecture: str,
    num_classes: int,
    dataset_id: str,
    dataset_params: dict[str, Any],
    samples: Iterable[SampleRow],
    auto_promote: bool = True,
    subject_identity_type: str | None = None,
    status: str = READY,
    registration: dict[str, Any] | None = None,
) -> Model:
    """The model row and its training-set manifest, without a version (yet)."""
    if session.scalar(select(Model.id).where(Model.name == name)) is not None:
        raise Conflict(f"a model named {name!r} already exists")
    model = Model(
        name=name,
        architecture=architecture,
        num_classes=num_classes,
        dataset_id=dataset_id,
        dataset_params=dataset_params,
        auto_promote=auto_promote,
        subject_identity_type=subject_identity_type,
        status=status,
        registration=registration,
    )
    session.add(model)
    session.flush()
    _insert_samples(session, model.id, samples)
    return model


def publish_first_version(
    *,
    session: Session,
    model: Model,
    checkpoint_sha256: str,
    checkpoint_size: int,
    stored_bytes: int,
    metrics: dict[str, Any],
    actor: str,
    job_id: str | None = None,
) -> ModelVersion:
    """Version 1, the `production` alias on it, and the `model.registered` audit event."""
    version = versions.add_version(
        session=session,
        model_id=model.id,
        number=1,
        parent_number=None,
        job_id=job_id,
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
        subject=f"model:{model.name}",
        data={
            "architecture": model.architecture,
            "dataset": model.dataset_id,
            "samples": count_samples(session=session, model_id=model.id),
            "checkpoint_sha256": checkpoint_sha256,
        },
    )
    return version


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


def list_samples(
    *, session: Session, model_id: int, after: str | None, limit: int, erased: bool | None
) -> list[TrainingSample]:
    """The model's training samples ordered by sample id, those after `after`; at most
    `limit`. `erased` keeps only erased (True) or only still-learned (False) samples."""
    q = select(TrainingSample).where(TrainingSample.model_id == model_id)
    if after is not None:
        q = q.where(TrainingSample.sample_id > after)
    if erased is not None:
        column = TrainingSample.erased_in_version
        q = q.where(column.is_not(None) if erased else column.is_(None))
    return list(session.scalars(q.order_by(TrainingSample.sample_id).limit(limit)))


def erased_up_to(*, session: Session, model_id: int, number: int) -> list[tuple[str, int]]:
    """(sample id, erased-in-version) of every sample erased in versions 2..`number`."""
    rows = session.execute(
        select(TrainingSample.sample_id, TrainingSample.erased_in_version)
        .where(
            TrainingSample.model_id == model_id,
            TrainingSample.erased_in_version.is_not(None),
            TrainingSample.erased_in_version <= number,
        )
        .order_by(TrainingSample.sample_id)
    )
    return [(sample_id, n) for sample_id, n in rows if n is not None]


def delete_samples(*, session: Session, model_id: int) -> int:
    """Remove a model's training-set manifest (a rejected registration leaves none)."""
    result = session.execute(delete(TrainingSample).where(TrainingSample.model_id == model_id))
    return int(getattr(result, "rowcount", 0) or 0)


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
    """Insert or replace an architecture's spec in one statement (INSERT ... ON CONFLICT DO
    UPDATE), so workers of a fleet that start at the same instant all succeed: the database
    serialises them on the row instead of failing all but one on the primary key."""
    table = cast(Table, ArchitectureSpec.__table__)
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table).values(arch_id=arch_id, tensors=tensors, updated_at=utcnow())
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[table.c.arch_id],
            set_={"tensors": stmt.excluded.tensors, "updated_at": stmt.excluded.updated_at},
        )
    )


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
    """Point `alias` at version `number` (recorded in its history); a no-op if it already is.
    A retired version is refused (409): it still contains data a later version erased."""
    version = get_version(session=session, model=model, number=number)
    if version.retired_at is not None:
        raise RetiredAliasTarget(
            f"version {number} of {model.name!r} is retired: version {version.superseded_by} "
            "erased data it was trained on, so no alias may point at it; choose version "
            f"{version.superseded_by} or later",
            version=number,
            superseded_by=version.superseded_by,
        )
    row = session.get(Alias, (model.id, alias))
    if row is not None and row.version_number == number:
        return row
    return move_alias(session=session, model=model, alias=alias, number=number, actor=actor)


def move_aliases_off(
    *, session: Session, model: Model, numbers: Sequence[int], to: int, actor: str
) -> list[str]:
    """Move every alias of `model` that points at one of `numbers` to version `to`."""
    if not numbers:
        return []
    rows = session.scalars(
        select(Alias).where(Alias.model_id == model.id, Alias.version_number.in_(numbers))
    )
    moved = []
    for row in list(rows):
        move_alias(session=session, model=model, alias=row.name, number=to, actor=actor)
        moved.append(row.name)
    return moved


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
