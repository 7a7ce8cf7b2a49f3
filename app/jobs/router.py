from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends
from sqlalchemy import select

from app.auth.service import Client
from app.core.errors import NotFound
from app.erasure_requests.models import ErasureRequest
from app.http.deps import SessionDep, require
from app.jobs import service
from app.jobs.schemas import JobRead
from app.registry.models import Model

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}", response_model=JobRead)
def get_job(
    job_id: UUID, session: SessionDep, client: Annotated[Client, Depends(require("erasure:read"))]
) -> JobRead:
    """A job: status, phase, progress, attempts, metrics, error, its requests."""
    job = service.get_job(session=session, job_id=str(job_id))
    model = session.get(Model, job.model_id)
    assert model is not None
    if not client.may_use_model(model.name):  # another portal's job does not exist for it
        raise NotFound(f"no job {job_id}")
    request_ids = session.scalars(select(ErasureRequest.id).where(ErasureRequest.job_id == job.id))
    return JobRead.model_validate(
        {
            **{c: getattr(job, c) for c in JobRead.model_fields if hasattr(job, c)},
            "model": model.name,
            "request_ids": list(request_ids),
        }
    )
