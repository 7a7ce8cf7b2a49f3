from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_VERSION = 2**31 - 1
"""Version numbers are 32-bit integers in the database; larger ones are refused with 422."""


class RegistrationRead(BaseModel):
    """The model's registration job, while it runs and after (what `lethe models register`
    shows): phase and percent as the worker reports them."""

    job_id: str
    status: str
    """The job's status: queued, running, succeeded or failed."""
    phase: str
    """queued, starting, checking checkpoint, opening data, reading data (one pass: every
    row read, decoded and its activations cached), measuring, publishing, ready (or
    rejected)."""
    progress: float
    """Percent, 0-100."""


class ModelRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str
    status: Literal["validating", "ready", "rejected"] = "ready"
    """`validating`: its registration job checks the checkpoint and data (erasure requests
    are accepted and wait); `ready`: version 1 is published; `rejected`: see
    `status_reason` (erasure requests are refused with 409)."""
    status_reason: str | None = None
    registration: RegistrationRead | None = None
    """The registration job (every API registration is one, answered 202); null for a
    model registered without a job: the demo (`seed-demo`), or one published before
    registrations were jobs."""
    architecture: str
    head_module: str | None = None
    """The module named as the head at registration (`torchvision:` architectures); null
    when the head was found automatically or the architecture defines it."""
    num_classes: int
    dataset_id: str
    auto_promote: bool
    latest_version: int
    training_samples: int
    subject_identity_types: list[str]
    """The identity types a request's `subject_identities` must use for this model (the
    type its subjects were registered under); empty when none is recorded."""
    created_at: datetime


class ModelList(BaseModel):
    items: list[ModelRead]


class VersionRead(BaseModel):
    """A version's manifest: lineage, what it erased, how, how well, and its checkpoint."""

    model_config = ConfigDict(from_attributes=True)
    model: str
    number: int
    parent_number: int | None
    job_id: str | None
    method: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    request_ids: list[str]
    erased_sample_ids: list[str] | None = None
    """Every sample erased in this lineage up to and including this version (so its length
    is `erased_count`); listed on the single-version route."""
    new_sample_ids: list[str] | None = None
    """The samples this version erased that no earlier version had; single-version route."""
    erased_count: int
    checkpoint_sha256: str
    checkpoint_size: int
    stored_bytes: int
    created_at: datetime
    status: Literal["live", "retired"] = "live"
    """`retired`: a later version erased data this one was trained on; its checkpoint
    answers 410 Gone and no alias may point at it."""
    retired_at: datetime | None = None
    superseded_by: int | None = None
    """The version whose publication retired this one."""


class VersionList(BaseModel):
    items: list[VersionRead]


class SampleRead(BaseModel):
    """One training sample of a model's manifest. The subject is never shown: only whether
    the sample belongs to one (its keyed hash stays inside Lethe)."""

    sample_id: str
    label: int
    has_subject: bool
    erased_in_version: int | None
    """The version that erased it; null while it is still learned by the latest version."""


class SampleList(BaseModel):
    items: list[SampleRead]
    next_cursor: str | None


class AliasRead(BaseModel):
    model: str
    alias: str
    version: int
    updated_at: datetime


class AliasUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"version": 3}]})
    version: int = Field(ge=1, le=MAX_VERSION)


class AliasMoveRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    alias: str
    from_version: int | None
    to_version: int
    actor: str
    moved_at: datetime


class AliasHistory(BaseModel):
    model: str
    alias: str
    items: list[AliasMoveRead]
