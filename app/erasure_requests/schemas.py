"""Request and response bodies of the erasure-request API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl, model_validator

from app.core.text import UNSAFE_ID_CHARS, UNSAFE_ID_RULE
from app.erasure_requests.models import RequestStatus


class SubjectIdentity(BaseModel):
    """An identity of the data subject, as in OpenDSR. Only its keyed hash is stored."""

    model_config = ConfigDict(extra="forbid")
    identity_type: Literal["email", "user_id", "phone_number", "customer_id", "controller_id"]
    identity_value: str = Field(min_length=1, max_length=512)
    identity_format: Literal["raw"] = "raw"


class ErasureRequestCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "subject_request_id": "5f7a2a4e-9c3b-4f0e-8a53-2f1c8d7b9e10",
                    "regulation": "gdpr",
                    "submitted_time": "2026-11-26T10:00:00Z",
                    "model": "digits-cnn",
                    "sample_ids": ["digits-00001", "digits-00002"],
                }
            ]
        },
    )
    subject_request_id: UUID
    regulation: Literal["gdpr", "ccpa", "lgpd", "uk-gdpr"] = "gdpr"
    submitted_time: AwareDatetime
    model: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The model to erase from. Leave it out (or `*`) with `subject_identities` "
        "to erase the subject from every model that holds them: a parent request with one "
        "child per model (docs/ERASURE.md). A request by `sample_ids` names its model.",
    )
    sample_ids: list[str] | None = Field(None, min_length=1)
    subject_identities: list[SubjectIdentity] | None = Field(None, min_length=1, max_length=100)
    status_callback_urls: list[HttpUrl] = Field(default_factory=list, max_length=10)

    @model_validator(mode="after")
    def _one_selector(self) -> ErasureRequestCreate:
        if (self.sample_ids is None) == (self.subject_identities is None):
            raise ValueError("give exactly one of `sample_ids` or `subject_identities`")
        if self.sample_ids is not None and self.model in (None, "*"):
            raise ValueError(
                "a request by `sample_ids` names its `model` (sample ids belong to one "
                "training set); only a request by `subject_identities` may leave it out"
            )
        for sid in self.sample_ids or []:
            if not sid or len(sid) > 256 or UNSAFE_ID_CHARS.search(sid):
                raise ValueError(f"sample ids are 1-256 characters {UNSAFE_ID_RULE}")
        return self


class ErasureRequestChild(BaseModel):
    """One model's part of a fan-out: an ordinary request (GET it by `request_id`)."""

    request_id: UUID
    model: str
    status: RequestStatus
    status_reason: str | None
    sample_count: int
    job_id: UUID | None
    result_version: int | None
    completed_at: datetime | None


class ErasureRequestRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    subject_request_id: UUID = Field(
        description="The portal's id; a fan-out child shows its parent's."
    )
    model: str | None = Field(description="Null on a fan-out parent (see `models`).")
    regulation: str
    status: RequestStatus
    status_reason: str | None
    sample_count: int
    submitted_time: datetime
    received_at: datetime
    due_at: datetime
    days_left: int
    overdue: bool
    job_id: UUID | None = Field(
        description="The job erasing the request. Null in the 202 answer: the job is made "
        "after the request is stored, when the scheduler batches the model's queued requests "
        "(at once in the demo; after LETHE_BATCH_WINDOW_S otherwise). Read it from "
        "GET /v1/erasure-requests/{id}."
    )
    result_version: int | None
    completed_at: datetime | None
    extension_months: int | None = None
    extension_reason: str | None = None
    denial_ground: str | None = None
    parent_id: UUID | None = Field(None, description="A fan-out child's parent request.")
    models: list[str] | None = Field(
        None,
        description="A fan-out parent's models: those holding the subject's data, one child "
        "each; `[]` when no model holds any (completed at once: no data held).",
    )
    children: list[ErasureRequestChild] | None = Field(
        None, description="A fan-out parent's child requests, one per model, in model order."
    )


class ErasureReceiptRead(BaseModel):
    """A signed erasure receipt. `signature` (base64) is over the UTF-8 bytes of `payload`,
    the canonical JSON of `receipt`; `certificate` is the processor certificate (the one
    OpenDSR's discovery serves), whose key made the signature."""

    receipt: dict[str, Any]
    payload: str
    signature: str
    algorithm: Literal["ECDSA-P256-SHA256", "RSA-PSS-SHA256"]
    certificate: str


class ErasureRequestList(BaseModel):
    items: list[ErasureRequestRead]
    next_cursor: str | None


DenialGround = Literal[
    "freedom_of_expression",
    "legal_obligation",
    "public_health",
    "archiving_research_statistics",
    "legal_claims",
    "manifestly_unfounded_or_excessive",
]
"""Art. 17(3)(a)-(e) GDPR, and Art. 12(5) for manifestly unfounded or excessive requests."""


class ErasureRequestExtend(BaseModel):
    """Art. 12(3): the deadline may be extended once, by one or two months, with a reason."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"months": 2, "reason": "the request covers 40 models; complexity of the erasure"}
            ]
        },
    )
    months: int = Field(ge=1, le=2)
    reason: str = Field(min_length=1, max_length=1024)


class ErasureRequestDeny(BaseModel):
    """Art. 17(3): a request may be refused on one of the listed grounds, with a reason."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "ground": "legal_claims",
                    "reason": "the samples are evidence in pending litigation 2026-C-114",
                }
            ]
        },
    )
    ground: DenialGround
    reason: str = Field(min_length=1, max_length=1024)
