"""OpenDSR 2.0 routes. Every response (errors included) is signed: `X-OpenDSR-Signature`
over the exact body bytes, with `X-OpenDSR-Processor-Domain`; errors use the spec's
shape `{"error": {"code", "message", "errors": [{"domain", "reason", "message"}]}}`
with status 400 for anything wrong with the request (and 401/403/404/409 as usual).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, FastAPI, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.auth.service import Client
from app.core.config import Settings
from app.core.db import utcnow
from app.core.errors import LetheError
from app.http.deps import SessionDep, SettingsDep, require
from app.opendsr import keys, service
from app.opendsr.mapping import API_VERSION, rfc3339
from app.opendsr.schemas import (
    IDENTITY_TYPES,
    Discovery,
    OpenDSRCancelled,
    OpenDSRError,
    OpenDSRRequestCreate,
    OpenDSRRequestCreated,
    OpenDSRStatusRead,
    SupportedIdentity,
)

CERTIFICATE_ROUTE = "opendsr_certificate"


class OpenDSRException(Exception):
    """Raised out of an OpenDSR route (so the session still rolls back) and rendered by
    `_render` in the spec's error shape."""

    def __init__(
        self,
        status_code: int,
        message: str,
        errors: list[dict[str, str]],
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status_code, self.message, self.errors, self.headers = (
            status_code,
            message,
            errors,
            headers or {},
        )


def _reason(type_: str) -> str:
    return "".join(p.capitalize() for p in re.split(r"[-_]", type_))


def _translate(exc: Exception) -> OpenDSRException:
    if isinstance(exc, RequestValidationError):
        errors = [
            {
                "domain": "Validation",
                "reason": "InvalidField",
                "message": f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg')}",
            }
            for e in exc.errors()
        ]
        return OpenDSRException(400, errors[0]["message"] if errors else "invalid", errors)
    if isinstance(exc, LetheError):
        code = 400 if exc.status == 422 else exc.status
        reason = str(exc.extra.get("reason") or _reason(exc.type))
        domain = "Validation" if code == 400 else "Processor"
        errors = [{"domain": domain, "reason": reason, "message": exc.detail}]
        errors += [
            {"domain": "Validation", "reason": reason, "message": f"{e['pointer']}: {e['detail']}"}
            for e in exc.extra.get("errors", [])
            if isinstance(e, dict) and "pointer" in e
        ]
        return OpenDSRException(code, exc.detail, errors, exc.headers)
    assert isinstance(exc, StarletteHTTPException)
    return OpenDSRException(
        exc.status_code,
        str(exc.detail),
        [{"domain": "Processor", "reason": "HttpError", "message": str(exc.detail)}],
        dict(exc.headers or {}),
    )


def _sign(response: Response, settings: Settings) -> Response:
    for name, value in keys.signed_headers(settings, bytes(response.body)).items():
        response.headers[name] = value
    return response


class OpenDSRRoute(APIRoute):
    """Signs what the endpoint returns; turns errors into OpenDSRException."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except (RequestValidationError, LetheError, StarletteHTTPException) as exc:
                raise _translate(exc) from exc
            return _sign(response, request.app.state.settings)

        return route


async def _render(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpenDSRException)
    body = OpenDSRError.model_validate(
        {"error": {"code": exc.status_code, "message": exc.message, "errors": exc.errors}}
    )
    response = JSONResponse(
        body.model_dump(),
        status_code=exc.status_code,
        headers={**exc.headers, "Cache-Control": "no-store"},
    )
    return _sign(response, request.app.state.settings)


def install(app: FastAPI) -> None:
    """Register the OpenDSR error rendering (the routes come with `router`)."""
    app.add_exception_handler(OpenDSRException, _render)


router = APIRouter(prefix="/opendsr/v1", tags=["OpenDSR 2.0"], route_class=OpenDSRRoute)
_errors: dict[int | str, dict[str, Any]] = {
    code: {"model": OpenDSRError, "description": text}
    for code, text in (
        (400, "invalid or unsupported request (the spec's error shape)"),
        (401, "missing or invalid API key"),
        (403, "the key lacks the scope or the model"),
        (404, "no such subject_request_id"),
        (409, "the request can no longer be cancelled"),
    )
}
Writer = Annotated[Client, Depends(require("erasure:write"))]
Reader = Annotated[Client, Depends(require("erasure:read"))]


async def _raw_body(request: Request) -> bytes:
    return await request.body()


@router.get("/discovery", response_model=Discovery)
def discovery(request: Request) -> Discovery:
    """OpenDSR discovery: API version, supported identities and request types, certificate."""
    return Discovery(
        api_version=API_VERSION,
        supported_identities=[
            SupportedIdentity(identity_type=t, identity_format="raw") for t in IDENTITY_TYPES
        ],
        supported_subject_request_types=list(service.SUBJECT_REQUEST_TYPES),
        processor_certificate=str(request.url_for(CERTIFICATE_ROUTE)),
    )


@router.get(
    "/certificate.pem",
    name=CERTIFICATE_ROUTE,
    response_class=Response,
    responses={200: {"content": {"application/x-pem-file": {}}}},
)
def certificate(settings: SettingsDep) -> Response:
    """The X.509 certificate whose key signs OpenDSR responses and callbacks."""
    pem = keys.signing_key(settings).certificate_pem
    return Response(pem, media_type="application/x-pem-file")


@router.post(
    "/requests",
    status_code=status.HTTP_201_CREATED,
    response_model=OpenDSRRequestCreated,
    responses=_errors,
)
def create_request(
    body: OpenDSRRequestCreate,
    raw: Annotated[bytes, Depends(_raw_body)],
    session: SessionDep,
    settings: SettingsDep,
    client: Writer,
) -> OpenDSRRequestCreated:
    req, _ = service.submit(session=session, body=body, client=client, settings=settings)
    encoded = base64.b64encode(raw).decode()
    return OpenDSRRequestCreated(
        controller_id=req.client,
        expected_completion_time=rfc3339(req.due_at),
        received_time=rfc3339(req.received_at),
        encoded_request=encoded,
        subject_request_id=req.subject_request_id,
        processor_signature=keys.signing_key(settings).sign(encoded.encode()),
    )


@router.get("/requests/{subject_request_id}", response_model=OpenDSRStatusRead, responses=_errors)
def get_request(
    subject_request_id: UUID, session: SessionDep, settings: SettingsDep, client: Reader
) -> OpenDSRStatusRead:
    req = service.get_request(
        session=session, subject_request_id=str(subject_request_id), client=client
    )
    return service.to_status(session=session, req=req, settings=settings)


@router.delete(
    "/requests/{subject_request_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OpenDSRCancelled,
    responses=_errors,
)
def cancel_request(
    subject_request_id: UUID, session: SessionDep, client: Writer
) -> OpenDSRCancelled:
    req = service.get_request(
        session=session, subject_request_id=str(subject_request_id), client=client
    )
    req = service.cancel(session=session, req=req, client=client)
    return OpenDSRCancelled(
        controller_id=req.client,
        received_time=rfc3339(utcnow()),
        subject_request_id=req.subject_request_id,
        api_version=API_VERSION,
    )
