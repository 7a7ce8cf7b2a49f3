from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.audit import service
from app.audit.schemas import AuditEventRead, AuditList, AuditVerification
from app.auth.service import Client
from app.core.deps import SessionDep, require
from app.core.errors import BadRequest

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Auditor = Annotated[Client, Depends(require("audit:read"))]


@router.get("", response_model=AuditList)
def list_events(
    session: SessionDep,
    client: Auditor,
    cursor: str | None = None,
    type: str | None = None,
    subject: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditList:
    """Audit events in chain order, filtered by type or subject; cursor paginated.

    Events committed but not yet sealed are sealed first, so none is missing here."""
    if cursor is not None and not (cursor.isascii() and cursor.isdigit() and len(cursor) < 19):
        raise BadRequest("the cursor is not one this API returned; start without it")
    service.seal(session=session)
    rows = service.list_events(
        session=session,
        after=int(cursor or 0),
        limit=limit + 1,
        type=type,
        subject=subject,
        models=client.models,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditList(
        items=[AuditEventRead.model_validate(r) for r in rows],
        next_cursor=str(rows[-1].seq) if more and rows else None,
    )


@router.get("/verify", response_model=AuditVerification)
def verify(session: SessionDep, client: Auditor) -> AuditVerification:
    """Walk the hash chain and report the first broken link, if any."""
    return AuditVerification(**dataclasses.asdict(service.verify(session=session)))
