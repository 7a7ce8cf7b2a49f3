"""OpenDSR 2.0 bodies (the spec's field names, kept as they are)."""

from __future__ import annotations

from typing import Any, Literal
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, HttpUrl, JsonValue

RequestStatus = Literal["pending", "in_progress", "completed", "cancelled"]


IDENTITY_TYPES = {
    "email": "email",
    "controller_customer_id": "customer_id",
    "user_id": "user_id",
    "customer_id": "customer_id",
    "phone_number": "phone_number",
}
"""OpenDSR identity type → the native one whose keyed hash the training manifest holds."""
_TYPE_ENUM: list[JsonValue] = [*sorted(IDENTITY_TYPES)]


class Identity(BaseModel):
    # The enums document what is accepted; the service refuses anything else with the
    # OpenDSR error that names the supported types.
    identity_type: str = Field(min_length=1, max_length=64, json_schema_extra={"enum": _TYPE_ENUM})
    identity_value: str = Field(min_length=1, max_length=512)
    identity_format: str = Field(default="raw", json_schema_extra={"enum": ["raw"]})


class OpenDSRRequestCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "regulation": "gdpr",
                    "subject_request_id": "a7551968-d5d6-44b2-9831-815ac9017798",
                    "subject_request_type": "erasure",
                    "submitted_time": "2026-11-26T10:00:00Z",
                    "subject_identities": [
                        {
                            "identity_type": "email",
                            "identity_value": "johndoe@example.com",
                            "identity_format": "raw",
                        }
                    ],
                    "api_version": "2.0",
                    "status_callback_urls": ["https://portal.example.com/opendsr/callbacks"],
                    "extensions": {"lethe.example.com": {"model": "digits-cnn"}},
                }
            ]
        }
    )
    regulation: str = "gdpr"
    subject_request_id: UUID
    subject_request_type: str
    subject_identities: list[Identity] = Field(default_factory=list, max_length=100)
    submitted_time: AwareDatetime
    api_version: str | None = Field(default=None, pattern=r"^[0-9A-Za-z.\-]{1,16}$")
    status_callback_urls: list[HttpUrl] = Field(default_factory=list, max_length=10)
    extensions: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """`extensions[<processor domain>]`: `model` (which model to erase from; may be left out
    when the API key is limited to one model) and optionally `sample_ids` instead of
    identities."""


class OpenDSRRequestCreated(BaseModel):
    controller_id: str
    expected_completion_time: str
    received_time: str
    encoded_request: str
    subject_request_id: str
    processor_signature: str
    """Base64 signature of `encoded_request` (its ASCII bytes) with the processor key."""


class OpenDSRStatusRead(BaseModel):
    controller_id: str
    expected_completion_time: str
    subject_request_id: str
    request_status: RequestStatus
    api_version: str
    extensions: dict[str, dict[str, Any]]


class OpenDSRCancelled(BaseModel):
    controller_id: str
    received_time: str
    subject_request_id: str
    api_version: str


class SupportedIdentity(BaseModel):
    identity_type: str
    identity_format: str


class Discovery(BaseModel):
    api_version: str
    supported_identities: list[SupportedIdentity]
    supported_subject_request_types: list[str]
    processor_certificate: str


class ErrorDetail(BaseModel):
    domain: str
    reason: str
    message: str


class ErrorObject(BaseModel):
    code: int
    message: str
    errors: list[ErrorDetail]


class OpenDSRError(BaseModel):
    """The spec's error shape (section 7.6)."""

    error: ErrorObject
