"""Every ORM table of the service, imported once so the metadata is complete (Alembic, tests)."""

from app.audit.models import AuditEvent, AuditHead
from app.auth.models import ApiKey
from app.core.db import Base
from app.erasure_requests.models import ErasureRequest, ErasureRequestSample
from app.jobs.models import Job
from app.models.models import Alias, AliasMove, Model, ModelVersion, TrainingSample

metadata = Base.metadata

__all__ = [
    "Alias",
    "AliasMove",
    "ApiKey",
    "AuditEvent",
    "AuditHead",
    "ErasureRequest",
    "ErasureRequestSample",
    "Job",
    "Model",
    "ModelVersion",
    "TrainingSample",
    "metadata",
]
