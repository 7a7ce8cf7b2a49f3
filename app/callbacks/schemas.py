"""Request and response bodies of model webhooks and the callback delivery history."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

WebhookEvent = Literal["version.published", "alias.moved"]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://ml.example.com/hooks/lethe",
                    "events": ["version.published", "alias.moved"],
                    "description": "redeploy the classifier",
                }
            ]
        },
    )
    url: HttpUrl
    events: list[WebhookEvent] = Field(min_length=1)
    description: str | None = Field(None, max_length=256)


class WebhookRead(BaseModel):
    id: str
    model: str
    url: str
    events: list[str]
    description: str | None
    created_by: str
    created_at: datetime


class WebhookCreated(WebhookRead):
    secret: str
    """`whsec_...`: verifies this webhook's `webhook-signature` headers. Shown once."""


class WebhookList(BaseModel):
    items: list[WebhookRead]


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    number: int
    attempted_at: datetime
    duration_ms: int
    status_code: int | None
    error: str | None


class DeliveryRead(BaseModel):
    id: str
    """The `webhook-id` header: the same on every retry."""
    event: str
    protocol: str
    request_id: str | None
    webhook_id: str | None
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    attempt_log: list[AttemptRead]


class DeliveryList(BaseModel):
    items: list[DeliveryRead]


class SigningSecret(BaseModel):
    secret: str
    """`whsec_...`: verifies the `webhook-signature` of erasure-request status callbacks."""
    scheme: str = "Standard Webhooks v1: HMAC-SHA256 over '{webhook-id}.{webhook-timestamp}.{body}'"
