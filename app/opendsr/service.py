"""OpenDSR requests as native erasure requests: translate, then reuse
`app.erasure_requests.service` (submit, get) and `lifecycle` (cancel).

Which model a request erases from is not part of OpenDSR: it is read from
`extensions[<processor domain>].model`, or, when left out, is the one model the API key
is limited to; otherwise the request fans out to every model holding the subject (a
native parent request, `app.erasure_requests.fanout`) and its status summarises them.
`extensions[<processor domain>].sample_ids` may name training samples (of a named model)
instead of `subject_identities`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import Client
from app.callbacks import service as callbacks
from app.callbacks import targets
from app.core.config import Settings
from app.core.errors import BadRequest, NotFound
from app.erasure_requests import lifecycle
from app.erasure_requests import service as requests_service
from app.erasure_requests.children import entries, is_parent
from app.erasure_requests.models import ErasureRequest
from app.erasure_requests.schemas import ErasureRequestCreate
from app.opendsr.mapping import API_VERSION, status_body
from app.opendsr.models import OpenDSRRequest
from app.opendsr.schemas import IDENTITY_TYPES, OpenDSRRequestCreate, OpenDSRStatusRead
from app.registry.models import Model

SUBJECT_REQUEST_TYPES = ("erasure",)


class Refused(BadRequest):
    """A well-formed request Lethe will not take; `reason` goes into the OpenDSR error."""

    def __init__(self, detail: str, *, reason: str, **extra: Any):
        super().__init__(detail, reason=reason, **extra)


def _extension(body: OpenDSRRequestCreate, settings: Settings) -> dict[str, Any]:
    return body.extensions.get(settings.opendsr_processor_domain) or {}


def to_native(
    body: OpenDSRRequestCreate, client: Client, settings: Settings
) -> ErasureRequestCreate:
    if body.subject_request_type not in SUBJECT_REQUEST_TYPES:
        raise Refused(
            f"subject_request_type {body.subject_request_type!r} is not supported; "
            f"this processor fulfils {list(SUBJECT_REQUEST_TYPES)}",
            reason="UnsupportedSubjectRequestType",
        )
    ext = _extension(body, settings)
    model = ext.get("model")
    sample_ids = ext.get("sample_ids")
    if model is None and client.models is not None and len(client.models) == 1:
        (model,) = client.models
    if model is None and sample_ids is None:
        model = "*"  # the subject, in every model that holds them (a fan-out parent)
    if not isinstance(model, str) or (sample_ids is not None and model == "*"):
        raise Refused(
            "sample ids belong to one model: name it in "
            f"extensions[{settings.opendsr_processor_domain!r}].model",
            reason="ModelRequired",
        )
    identities = []
    for i in body.subject_identities:
        native_type = IDENTITY_TYPES.get(i.identity_type)
        if native_type is None or i.identity_format != "raw":
            raise Refused(
                f"identity {i.identity_type}/{i.identity_format} is not supported; "
                "GET /opendsr/v1/discovery lists the supported ones",
                reason="UnsupportedIdentity",
            )
        identities.append({"identity_type": native_type, "identity_value": i.identity_value})
    try:
        return ErasureRequestCreate.model_validate(
            {
                "subject_request_id": body.subject_request_id,
                "regulation": body.regulation,
                "submitted_time": body.submitted_time,
                "model": model,
                "sample_ids": sample_ids,
                "subject_identities": None if sample_ids is not None else identities or None,
                "status_callback_urls": [],
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise Refused(f"{where}: {first.get('msg')}".strip(": "), reason="InvalidRequest") from exc


def submit(
    *, session: Session, body: OpenDSRRequestCreate, client: Client, settings: Settings
) -> tuple[ErasureRequest, bool]:
    """Store the request through the native service. Its status callbacks speak OpenDSR:
    the native submit gets no callback URLs, they are attached here once the request is
    marked as OpenDSR, and one `pending` callback reports its state after submission."""
    urls = [str(u) for u in body.status_callback_urls]
    targets.check_targets(urls, settings, pointer="/status_callback_urls")
    native = to_native(body, client, settings)
    req, created = requests_service.submit(
        session=session, body=native, client=client, settings=settings
    )
    if not created:
        return req, False
    session.add(
        OpenDSRRequest(
            request_id=req.id,
            subject_request_type=body.subject_request_type,
            api_version=body.api_version or API_VERSION,
            processor_domain=settings.opendsr_processor_domain,
        )
    )
    req.callback_urls = urls
    session.flush()
    callbacks.request_status_changed(session=session, request_ids=[req.id])
    return req, True


def get_request(*, session: Session, subject_request_id: str, client: Client) -> ErasureRequest:
    req_id = session.scalar(
        select(ErasureRequest.id).where(ErasureRequest.subject_request_id == subject_request_id)
    )
    missing = NotFound(f"no request with subject_request_id {subject_request_id}")
    if req_id is None:
        raise missing
    try:
        return requests_service.get_request(session=session, request_id=req_id, client=client)
    except NotFound:  # another portal's: the same answer, without its native id
        raise missing from None


def cancel(*, session: Session, req: ErasureRequest, client: Client) -> ErasureRequest:
    return lifecycle.cancel(session=session, req=req, client=client)


def to_status(*, session: Session, req: ErasureRequest, settings: Settings) -> OpenDSRStatusRead:
    """The request's OpenDSR status; a fan-out parent's summarises its children (each
    model's in `extensions[domain].models`)."""
    model_name = session.scalar(select(Model.name).where(Model.id == req.model_id))
    marker = session.get(OpenDSRRequest, req.id)
    domain = marker.processor_domain if marker else settings.opendsr_processor_domain
    kids = entries(session=session, parent_ids=[req.id]).get(req.id) if is_parent(req) else None
    return OpenDSRStatusRead.model_validate(
        status_body(req=req, model_name=model_name, domain=domain, children=kids)
    )
