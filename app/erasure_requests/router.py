"""HTTP routes for erasure requests: translate HTTP to service calls, nothing else."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.auth.service import Client
from app.erasure_requests import lifecycle, receipts, service
from app.erasure_requests.models import RequestStatus
from app.erasure_requests.schemas import (
    ErasureReceiptRead,
    ErasureRequestCreate,
    ErasureRequestDeny,
    ErasureRequestExtend,
    ErasureRequestList,
    ErasureRequestRead,
)
from app.http.deps import SessionDep, SettingsDep, require

router = APIRouter(prefix="/v1/erasure-requests", tags=["erasure requests"])
Writer = Annotated[Client, Depends(require("erasure:write"))]
Reader = Annotated[Client, Depends(require("erasure:read"))]


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=ErasureRequestRead,
    responses={
        200: {
            "model": ErasureRequestRead,
            "description": "a duplicate subject_request_id: the original",
        }
    },
)
def submit_request(
    body: ErasureRequestCreate,
    session: SessionDep,
    settings: SettingsDep,
    client: Writer,
    response: Response,
) -> ErasureRequestRead:
    """Submit an erasure request (202); a repeated `subject_request_id` gets the original (200).

    Send an `Idempotency-Key` to retry safely: the stored response is replayed.
    """
    req, created = service.submit(session=session, body=body, client=client, settings=settings)
    if not created:
        response.status_code = status.HTTP_200_OK
    response.headers["Location"] = f"/v1/erasure-requests/{req.id}"
    return service.to_read(session, req)


@router.get("/{request_id}", response_model=ErasureRequestRead)
def get_request(request_id: UUID, session: SessionDep, client: Reader) -> ErasureRequestRead:
    """A request's status, deadline (`due_at`, `days_left`), job and result version."""
    req = service.get_request(session=session, request_id=str(request_id), client=client)
    return service.to_read(session, req)


@router.get("/{request_id}/samples", response_model=list[str])
def get_request_samples(request_id: UUID, session: SessionDep, client: Reader) -> list[str]:
    """The training sample ids a request names (resolved from subjects if given)."""
    req = service.get_request(session=session, request_id=str(request_id), client=client)
    return service.sample_ids_of(session=session, request_id=req.id)


@router.get(
    "/{request_id}/receipt",
    response_model=ErasureReceiptRead,
    responses={409: {"description": "the request is still open, or was canceled"}},
)
def get_request_receipt(
    request_id: UUID, session: SessionDep, settings: SettingsDep, client: Reader, request: Request
) -> ErasureReceiptRead:
    """The signed receipt of a completed, denied or failed request: what was asked, what
    was erased and which version serves now, the versions retired, the verification
    metrics, the final audit event's hash with the chain head, and the newest signed audit
    checkpoint (with its inclusion proof's URL once it covers that event)."""
    req = service.get_request(session=session, request_id=str(request_id), client=client)
    store = request.app.state.store
    return receipts.receipt(session=session, req=req, settings=settings, store=store)


@router.get(
    "",
    response_model=ErasureRequestList,
    responses={404: {"description": "no model with the name given in `model`"}},
)
def list_requests(
    session: SessionDep,
    client: Reader,
    status_: Annotated[RequestStatus | None, Query(alias="status")] = None,
    model: str | None = None,
    overdue: bool | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ErasureRequestList:
    """Requests, oldest first, filtered by status, model or overdue; cursor paginated."""
    rows, next_cursor = service.list_requests(
        session=session,
        client=client,
        status=status_,
        model=model,
        overdue=overdue,
        cursor=cursor,
        limit=limit,
    )
    return ErasureRequestList(
        items=[service.to_read(session, r) for r in rows], next_cursor=next_cursor
    )


@router.delete("/{request_id}", response_model=ErasureRequestRead)
def cancel_request(request_id: UUID, session: SessionDep, client: Writer) -> ErasureRequestRead:
    """Cancel a request that no job has started on."""
    req = service.get_request(session=session, request_id=str(request_id), client=client)
    return service.to_read(session, lifecycle.cancel(session=session, req=req, client=client))


@router.post("/{request_id}/extend", response_model=ErasureRequestRead)
def extend_request(
    request_id: UUID, body: ErasureRequestExtend, session: SessionDep, client: Writer
) -> ErasureRequestRead:
    """Extend the deadline once by one or two months (Art. 12(3)); audited with the reason."""
    req = service.get_request(session=session, request_id=str(request_id), client=client)
    req = lifecycle.extend(
        session=session, req=req, months=body.months, reason=body.reason, client=client
    )
    return service.to_read(session, req)


@router.post("/{request_id}/deny", response_model=ErasureRequestRead)
def deny_request(
    request_id: UUID, body: ErasureRequestDeny, session: SessionDep, client: Writer
) -> ErasureRequestRead:
    """Refuse an open request on an Art. 17(3) ground (or Art. 12(5)); audited."""
    req = service.get_request(session=session, request_id=str(request_id), client=client)
    req = lifecycle.deny(
        session=session, req=req, ground=body.ground, reason=body.reason, client=client
    )
    return service.to_read(session, req)
