"""ORM: registered models, their immutable versions, training-set manifests, aliases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, utcnow


class Model(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    architecture: Mapped[str] = mapped_column(String(128))
    num_classes: Mapped[int]
    dataset_id: Mapped[str] = mapped_column(String(128))
    dataset_params: Mapped[dict[str, Any]]
    auto_promote: Mapped[bool] = mapped_column(default=True)
    """Whether a newly published version moves the `production` alias."""
    subject_identity_type: Mapped[str | None] = mapped_column(String(32))
    """The identity type (`user_id`, `email`, ...) its samples' subject refs are keyed hashes
    of; None when the training set names no subjects (or the model predates recording it)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="ready", server_default="ready")
    """`validating` while its registration job runs, then `ready` (version 1 published) or
    `rejected` (`status_reason` says why; nothing of it is left but this row)."""
    status_reason: Mapped[str | None] = mapped_column(String(4096))
    registration: Mapped[dict[str, Any] | None]
    """What its registration job needs: the upload's blob digest and format, the actor,
    the named `head_module`; None for models registered without a job (the demo)."""

    @property
    def head_module(self) -> str | None:
        """The logits layer named at registration (`torchvision:` architectures); None:
        found automatically, or defined by the architecture."""
        return (self.registration or {}).get("head_module")


VALIDATING, READY, REJECTED = "validating", "ready", "rejected"


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    number: Mapped[int]
    parent_number: Mapped[int | None]
    job_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    """The job that produced it; unique, so a redelivered job never publishes twice."""
    method: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]]
    metrics: Mapped[dict[str, Any]]
    request_ids: Mapped[list[str]]
    erased_count: Mapped[int] = mapped_column(default=0)
    """Training samples erased in this lineage up to and including this version."""
    checkpoint_sha256: Mapped[str] = mapped_column(String(64))
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    """Bytes this version added to the store (only the tensors that changed)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    retired_at: Mapped[datetime | None]
    """Set when a later version erased data this one was trained on: no longer served."""
    superseded_by: Mapped[int | None]
    """The version whose publication retired this one."""
    blobs_deleted_at: Mapped[datetime | None]
    """When its blobs that no live version shares were deleted from the store."""


class TrainingSample(Base):
    __tablename__ = "training_samples"
    __table_args__ = (Index("ix_training_samples_subject", "model_id", "subject_ref"),)

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    sample_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    label: Mapped[int]
    subject_ref: Mapped[str | None] = mapped_column(String(64))
    """Keyed hash (HMAC-SHA256) of the data subject's identity; never the raw identity."""
    erased_in_version: Mapped[int | None]


class Alias(Base):
    __tablename__ = "aliases"

    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version_number: Mapped[int]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class AliasMove(Base):
    __tablename__ = "alias_moves"

    id: Mapped[int] = mapped_column(primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id"))
    alias: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None]
    to_version: Mapped[int]
    actor: Mapped[str] = mapped_column(String(128))
    moved_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArchitectureSpec(Base):
    """The tensors an architecture's checkpoint must have, published by the engine side.

    The API process never imports torch, so it checks an uploaded checkpoint's header
    against this spec: `{name: {"dtype": "F32", "shape": [64, "num_classes"]}}`, where the
    string `num_classes` stands for the model's number of classes.
    """

    __tablename__ = "architecture_specs"

    arch_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    tensors: Mapped[dict[str, Any]]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
