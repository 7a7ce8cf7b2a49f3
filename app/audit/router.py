from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from app.audit import checkpoints, service
from app.audit.schemas import (
    AuditEventRead,
    AuditList,
    AuditVerification,
    CheckpointRead,
    InclusionProof,
)
from app.auth.service import Client
from app.core.errors import BadRequest, NotFound
from app.http.deps import SessionDep, require

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
def verify(session: SessionDep, request: Request, client: Auditor) -> AuditVerification:
    """Walk the hash chain and report the first broken link, if any; then check the log
    against the newest signed checkpoint in the store."""
    return _verified(session, request, None)


def _verified(
    session: SessionDep, request: Request, supplied: checkpoints.Checkpoint | None
) -> AuditVerification:
    state = request.app.state
    found = checkpoints.verify_log(session, state.store, state.audit_key.public, supplied)
    return AuditVerification(
        **{**dataclasses.asdict(found.chain), "ok": found.ok, "reason": found.reason},
        checkpoint=CheckpointRead.model_validate(found.newest) if found.newest else None,
        checkpoints_checked=found.checked,
    )


@router.post("/verify", response_model=AuditVerification)
def verify_against_checkpoint(
    body: CheckpointRead, session: SessionDep, request: Request, client: Auditor
) -> AuditVerification:
    """Verify the chain, the newest stored checkpoint AND the checkpoint in the body (one an
    auditor kept): the log must still hold the events it signed."""
    supplied = checkpoints.Checkpoint(
        body.size, body.root, body.head_hash, body.time, body.key_id, body.signature
    )
    return _verified(session, request, supplied)


@router.get("/checkpoint", response_model=CheckpointRead)
def latest_checkpoint(request: Request, client: Auditor) -> CheckpointRead:
    """The newest signed checkpoint (one is made now if the log grew since): keep it, and
    hand it back to `POST /v1/audit/verify` later."""
    state = request.app.state
    checkpoints.checkpoint_now(
        state.session_factory,
        state.store,
        state.audit_key,
        retain_days=state.settings.audit_checkpoint_retain_days,
    )
    newest = checkpoints.newest(state.store)
    if newest is None:
        raise NotFound("the audit log is empty: nothing to checkpoint yet")
    return CheckpointRead.model_validate(newest)


@router.get("/checkpoints/{size}", response_model=CheckpointRead)
def checkpoint_of_size(
    size: Annotated[int, Path(ge=1, le=2**62)], request: Request, client: Auditor
) -> CheckpointRead:
    """The signed checkpoint of the log's first `size` events, as written to the store (the
    one a callback named)."""
    found = checkpoints.stored(request.app.state.store, size)
    if found is None:
        raise NotFound(f"no checkpoint of {size} events")
    return CheckpointRead.model_validate(found)


@router.get(
    "/public-key", response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
def public_key(request: Request, client: Auditor) -> Response:
    """The Ed25519 public key (PEM) that signs checkpoints."""
    return Response(
        checkpoints.public_pem(request.app.state.audit_key.public), media_type="text/plain"
    )


@router.get("/events/{seq}/proof", response_model=InclusionProof)
def inclusion_proof(
    seq: Annotated[int, Path(ge=1, le=2**62)],
    session: SessionDep,
    request: Request,
    client: Auditor,
    size: Annotated[int | None, Query(ge=1, le=2**62)] = None,
) -> InclusionProof:
    """The inclusion proof of event `seq` in the checkpoint of `size` events (the newest
    when left out), checkable offline against that signed checkpoint."""
    visible = service.list_events(session=session, after=seq - 1, limit=1, models=client.models)
    if not visible or visible[0].seq != seq:
        raise NotFound(f"no audit event {seq}")
    found = checkpoints.proof(session, request.app.state.store, seq=seq, size=size)
    if found is None:
        raise NotFound(
            f"no checkpoint covers event {seq} yet; GET /v1/audit/checkpoint makes one"
            if size is None
            else f"no checkpoint of {size} events covers event {seq}"
        )
    return InclusionProof(
        seq=found.seq,
        leaf=found.leaf,
        size=found.size,
        path=found.path,
        checkpoint=CheckpointRead.model_validate(found.checkpoint),
    )
