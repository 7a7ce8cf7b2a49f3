"""Every ORM table of the service, imported once so the metadata is complete (Alembic, tests)."""

from app.audit.models import AuditEvent, AuditHead, AuditPending
from app.auth.models import ApiKey
from app.callbacks.models import CallbackAttempt, CallbackDelivery, ModelWebhook
from app.core.db import Base
from app.erasure_requests.models import ErasureRequest, ErasureRequestSample
from app.idempotency.models import IdempotencyKey
from app.jobs.models import Job
from app.opendsr.models import OpenDSRRequest
from app.registry.models import (
    Alias,
    AliasMove,
    ArchitectureSpec,
    Model,
    ModelVersion,
    TrainingSample,
)

metadata = Base.metadata

__all__ = [
    "Alias",
    "AliasMove",
    "ApiKey",
    "ArchitectureSpec",
    "AuditEvent",
    "AuditHead",
    "AuditPending",
    "CallbackAttempt",
    "CallbackDelivery",
    "ErasureRequest",
    "ErasureRequestSample",
    "IdempotencyKey",
    "Job",
    "Model",
    "ModelVersion",
    "ModelWebhook",
    "OpenDSRRequest",
    "TrainingSample",
    "metadata",
]
