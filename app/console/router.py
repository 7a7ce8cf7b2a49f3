"""Console pages and actions: translate HTML forms to domain service calls, nothing else.

Every page depends on `page(scope)` and every POST on `action(scope)` (scope + CSRF), with
the scopes of the API routes they mirror; errors render as HTML pages (app/console/app.py).
"""

from __future__ import annotations

import hmac
import json
import secrets
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from fastapi.templating import Jinja2Templates
from starlette.background import BackgroundTask

from app.audit import service as audit
from app.audit import verification
from app.audit.schemas import AuditEventRead
from app.auth import service as auth
from app.console import charts
from app.console import service as console
from app.console.dependencies import (
    Admin,
    AdminAction,
    AuditAction,
    Auditor,
    ModelDep,
    Models,
    Requests,
    RequestsAction,
    Viewer,
    sessions_of,
)
from app.console.session import COOKIE, SIGNIN_COOKIE
from app.core.db import utcnow
from app.core.errors import Forbidden, NotFound, Unauthorized
from app.erasure_requests import lifecycle
from app.erasure_requests import service as requests
from app.erasure_requests.models import FINAL_STATUSES, RequestStatus
from app.erasure_requests.schemas import DenialGround
from app.http.deps import SessionDep
from app.registry import service as registry
from app.registry.schemas import MAX_VERSION

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")
router = APIRouter(include_in_schema=False)
PAGE_SIZE = 50
GROUNDS: dict[str, str] = {
    "freedom_of_expression": "Art. 17(3)(a) freedom of expression and information",
    "legal_obligation": "Art. 17(3)(b) legal obligation or public task",
    "public_health": "Art. 17(3)(c) public health",
    "archiving_research_statistics": "Art. 17(3)(d) archiving, research or statistics",
    "legal_claims": "Art. 17(3)(e) legal claims",
    "manifestly_unfounded_or_excessive": "Art. 12(5) manifestly unfounded or excessive",
}


def render(
    request: Request,
    name: str,
    viewer: Viewer | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    context.update(request=request, viewer=viewer, now=utcnow())
    return TEMPLATES.TemplateResponse(request, name, context, status_code=status_code)


def sign_in_page(
    request: Request, *, status_code: int, error: str | None = None, next_: str = ""
) -> HTMLResponse:
    """The sign-in form, with a fresh double-submit token for its own CSRF check."""
    token = secrets.token_urlsafe(16)
    next_ = _safe_next(next_ or request.url.path)
    response = render(
        request,
        "sign_in.html",
        None,
        status_code=status_code,
        error=error,
        next=next_,
        signin_token=token,
    )
    response.set_cookie(
        SIGNIN_COOKIE,
        token,
        max_age=600,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


def _safe_next(value: str) -> str:
    ok = value.startswith("/console/") and "//" not in value and "/sign-" not in value
    return value if ok else "/console/requests"


@router.get("/", include_in_schema=False)
def home() -> RedirectResponse:
    return RedirectResponse("/console/requests", status_code=303)


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_form(request: Request, next: str = "") -> HTMLResponse:
    return sign_in_page(request, status_code=200, next_=_safe_next(next))


@router.post("/sign-in", response_model=None)
def sign_in(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str, Form(max_length=200)] = "",
    signin_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=2000)] = "",
) -> HTMLResponse | RedirectResponse:
    expected = request.cookies.get(SIGNIN_COOKIE, "")
    if not expected or not hmac.compare_digest(expected, signin_token):
        raise Forbidden("the sign-in form expired or was not sent from this console; reload it")
    client = auth.authenticate(session=session, token=api_key.strip())
    if client is None:
        return sign_in_page(
            request, status_code=401, error="That API key is unknown or revoked.", next_=next
        )
    prefix = api_key.strip().split("_")[1]
    sessions = sessions_of(request)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        COOKIE,
        sessions.issue(key_id=client.key_id, prefix=prefix),
        max_age=sessions.max_age_s,
        path="/console",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(SIGNIN_COOKIE, path="/console")
    return response


@router.post("/sign-out")
def sign_out(request: Request, csrf_token: Annotated[str, Form()] = "") -> RedirectResponse:
    sessions = sessions_of(request)
    token = sessions.read(request.cookies.get(COOKIE))
    if token is None:
        raise Unauthorized("you are not signed in")
    if not sessions.csrf_ok(token, csrf_token):
        raise Forbidden("the form's CSRF token is missing or stale; reload the page")
    response = RedirectResponse("/console/sign-in", status_code=303)
    response.delete_cookie(COOKIE, path="/console")
    return response


# --- requests -------------------------------------------------------------------------


@router.get("/requests", response_class=HTMLResponse)
def requests_page(
    request: Request,
    session: SessionDep,
    viewer: Requests,
    status: Annotated[RequestStatus | None, Query()] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    overdue: Annotated[bool | None, Query()] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> HTMLResponse:
    rows, next_cursor = requests.list_requests(
        session=session,
        client=viewer.client,
        status=status,
        model=model or None,
        overdue=overdue,
        cursor=cursor,
        limit=PAGE_SIZE,
        # one row per data subject's request, a parent's children under it; a model's
        # own listing shows its children too (they are that model's requests)
        top_level=not model,
    )
    now = utcnow()
    filters = {
        k: v
        for k, v in {
            "status": status.value if status else None,
            "model": model or None,
            "overdue": {True: "true", False: "false"}.get(overdue) if overdue is not None else None,
        }.items()
        if v
    }
    return render(
        request,
        "requests.html",
        viewer,
        items=[requests.to_read(session, r, now) for r in rows],
        counts=console.status_counts(session=session, client=viewer.client),
        models=[m.name for m in console.models_for(session=session, client=viewer.client)],
        filters=filters,
        next_url=f"?{urlencode({**filters, 'cursor': next_cursor})}" if next_cursor else None,
        statuses=[s.value for s in RequestStatus],
    )


def _request_context(session: Any, viewer: Viewer, request_id: str) -> dict[str, Any]:
    req = requests.get_request(session=session, request_id=request_id, client=viewer.client)
    job = console.job_of(session=session, req=req)
    read = requests.to_read(session, req)
    return {
        "req": read,
        "job": job,
        "steps": console.timeline(req=req, job=job),
        "open": req.status not in FINAL_STATUSES,
        "deniable": req.status in (RequestStatus.received, RequestStatus.queued),
        "extendable": req.status not in FINAL_STATUSES and req.extended_at is None,
        "grounds": GROUNDS,
    }


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(
    request: Request, request_id: str, session: SessionDep, viewer: Requests, done: str = ""
) -> HTMLResponse:
    context = _request_context(session, viewer, _uuid(request_id))
    return render(request, "request.html", viewer, done=done, **context)


@router.get("/requests/{request_id}/progress")
def request_progress(request_id: str, session: SessionDep, viewer: Requests) -> JSONResponse:
    """What the request page polls while a request is open: status and the job's phase/%."""
    req = requests.get_request(session=session, request_id=_uuid(request_id), client=viewer.client)
    job = console.job_of(session=session, req=req)
    return JSONResponse(
        {
            "status": req.status.value,
            "final": req.status in FINAL_STATUSES,
            "phase": job.phase if job else None,
            "progress": round(job.progress, 1) if job else None,
        },
        headers={"Cache-Control": "no-store"},
    )


@router.post("/requests/{request_id}/deny")
def deny(
    request_id: str,
    session: SessionDep,
    viewer: RequestsAction,
    ground: Annotated[DenialGround, Form()],
    reason: Annotated[str, Form(min_length=1, max_length=1024)],
) -> RedirectResponse:
    req = requests.get_request(session=session, request_id=_uuid(request_id), client=viewer.client)
    lifecycle.deny(session=session, req=req, ground=ground, reason=reason, client=viewer.client)
    return RedirectResponse(f"/console/requests/{req.id}?done=denied", status_code=303)


@router.post("/requests/{request_id}/extend")
def extend(
    request_id: str,
    session: SessionDep,
    viewer: RequestsAction,
    months: Annotated[int, Form(ge=1, le=2)],
    reason: Annotated[str, Form(min_length=1, max_length=1024)],
) -> RedirectResponse:
    req = requests.get_request(session=session, request_id=_uuid(request_id), client=viewer.client)
    lifecycle.extend(session=session, req=req, months=months, reason=reason, client=viewer.client)
    return RedirectResponse(f"/console/requests/{req.id}?done=extended", status_code=303)


def _uuid(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as exc:
        raise NotFound(f"no erasure request {value!r}") from exc


# --- models ---------------------------------------------------------------------------


@router.get("/models", response_class=HTMLResponse)
def models_page(request: Request, session: SessionDep, viewer: Models) -> HTMLResponse:
    models = console.models_for(session=session, client=viewer.client)
    latest = console.latest_versions(session=session, model_ids=[m.id for m in models])
    jobs = registry.registration_jobs(session=session, models=models)
    return render(request, "models.html", viewer, models=models, latest=latest, jobs=jobs)


@router.get("/models/{name}", response_class=HTMLResponse)
def model_page(
    request: Request, session: SessionDep, viewer: Models, model: ModelDep
) -> HTMLResponse:
    versions = registry.list_versions(session=session, model=model)
    moves = console.alias_moves(session=session, model=model)
    aliases: dict[int, list[str]] = {}
    current: dict[str, int] = {}
    for move in reversed(moves):
        current[move.alias] = move.to_version
    for alias, number in current.items():
        aliases.setdefault(number, []).append(alias)
    return render(
        request,
        "model.html",
        viewer,
        model=model,
        versions=list(reversed(versions)),
        moves=moves,
        aliases=aliases,
        samples=registry.count_samples(session=session, model_id=model.id),
        registration=registry.registration_job(session=session, model=model),
    )


@router.get("/models/{name}/versions/{number}", response_class=HTMLResponse)
def version_page(
    request: Request,
    session: SessionDep,
    viewer: Models,
    model: ModelDep,
    number: int,
) -> HTMLResponse:
    if not 1 <= number <= MAX_VERSION:
        raise NotFound(f"model {model.name!r} has no version {number}")
    version = registry.get_version(session=session, model=model, number=number)
    metrics = version.metrics or {}
    parent = metrics.get("parent") or {}
    rows = [
        (key, label, metrics.get(key), parent.get(key))
        for key, label in (
            ("UA", "UA: unlearning accuracy (100 − forget-set accuracy)"),
            ("RA", "RA: accuracy on retained samples"),
            ("TA", "TA: test accuracy"),
            ("MIA", "MIA: forgotten samples a membership attack calls non-members"),
            ("probe_UA", "probe-UA: UA of a fresh linear probe on the features"),
        )
    ]
    return render(
        request,
        "version.html",
        viewer,
        model=model,
        version=version,
        rows=rows,
        charts=charts.charts(metrics.get("confidence")),
        extra={
            k: v
            for k, v in metrics.items()
            if k not in {"parent", "confidence", *(r[0] for r in rows)}
        },
    )


# --- audit ----------------------------------------------------------------------------


def _audit_context(
    request: Request,
    session: Any,
    viewer: Viewer,
    type_: str | None,
    subject: str | None,
    after: int,
) -> dict[str, Any]:
    audit.seal(session=session)
    rows = audit.list_events(
        session=session,
        after=after,
        limit=PAGE_SIZE + 1,
        type=type_,
        subject=subject,
        models=viewer.client.models,
    )
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    filters = {k: v for k, v in {"type": type_, "subject": subject}.items() if v}
    return {
        "events": rows,
        "filters": filters,
        "pending": audit.pending_count(session=session),
        "head": console.chain_head(session=session),
        "walk": _full_walk(request).state,
        "next_url": f"?{urlencode({**filters, 'after': rows[-1].seq})}" if more and rows else None,
        "export_url": f"/console/audit/export.jsonl?{urlencode(filters)}",
    }


def _full_walk(request: Request) -> verification.FullWalk:
    state = request.app.state
    if getattr(state, "audit_walk", None) is None:
        state.audit_walk = verification.FullWalk()
    walk: verification.FullWalk = state.audit_walk
    return walk


@router.get("/audit", response_class=HTMLResponse)
def audit_page(
    request: Request,
    session: SessionDep,
    viewer: Auditor,
    type: Annotated[str | None, Query(max_length=64)] = None,
    subject: Annotated[str | None, Query(max_length=128)] = None,
    after: Annotated[int, Query(ge=0)] = 0,
) -> HTMLResponse:
    context = _audit_context(request, session, viewer, type or None, subject or None, after)
    return render(request, "audit.html", viewer, quick=None, **context)


@router.post("/audit/verify", response_class=HTMLResponse)
def audit_verify(request: Request, session: SessionDep, viewer: AuditAction) -> HTMLResponse:
    """The quick check from the newest signed checkpoint now, and the full walk of every
    event started in the background (its progress shows on the page)."""
    state = request.app.state
    quick = verification.quick_check(session=session, store=state.store, key=state.audit_key.public)
    walk = _full_walk(request)
    context = _audit_context(request, session, viewer, None, None, 0)
    if not walk.state.running:  # shown as starting; it starts once the page is sent
        context["walk"] = verification.WalkState(running=True, started_at=utcnow())
    page = render(request, "audit.html", viewer, quick=quick, **context)
    page.background = BackgroundTask(
        walk.start,
        session_factory=state.session_factory,
        store=state.store,
        key=state.audit_key.public,
    )
    return page


@router.get("/audit/export.jsonl")
def audit_export(
    request: Request,
    session: SessionDep,
    viewer: Auditor,
    type: Annotated[str | None, Query(max_length=64)] = None,
    subject: Annotated[str | None, Query(max_length=128)] = None,
) -> StreamingResponse:
    """Every matching event, one JSON object a line, in chain order; streamed a batch of
    rows at a time (Core rows, keyset pages, one chunk per batch)."""
    audit.seal(session=session)
    factory = request.app.state.session_factory
    models = viewer.client.models

    def chunks() -> Iterator[bytes]:
        with factory() as own:
            for rows in audit.event_batches(
                session=own, type=type or None, subject=subject or None, models=models
            ):
                yield b"".join(
                    AuditEventRead.model_validate(dict(r._mapping)).model_dump_json().encode()
                    + b"\n"
                    for r in rows
                )

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        chunks(),
        media_type="application/jsonl",
        headers={"Content-Disposition": f'attachment; filename="lethe-audit-{stamp}.jsonl"'},
    )


# --- keys -----------------------------------------------------------------------------


@router.get("/keys", response_class=HTMLResponse)
def keys_page(request: Request, session: SessionDep, viewer: Admin) -> HTMLResponse:
    return render(
        request, "keys.html", viewer, keys=auth.list_keys(session=session), scopes=auth.SCOPES
    )


@router.post("/keys", response_class=HTMLResponse)
def create_key(
    request: Request,
    session: SessionDep,
    viewer: AdminAction,
    name: Annotated[str, Form(min_length=1, max_length=128)],
    scopes: Annotated[list[str], Form()],
    models: Annotated[str, Form(max_length=4000)] = "",
) -> HTMLResponse:
    limited = [m.strip() for m in models.split(",") if m.strip()] or None
    row, secret = auth.create_key(session=session, name=name, scopes=scopes, models=limited)
    audit.append(
        session=session,
        type="key.created",
        actor=viewer.client.actor,
        subject=f"key:{row.prefix}",
        data={"name": name, "scopes": row.scopes},
    )
    response = render(
        request,
        "keys.html",
        viewer,
        status_code=201,
        keys=auth.list_keys(session=session),
        scopes=auth.SCOPES,
        created=row,
        secret=secret,
    )
    return response


@router.post("/keys/{prefix}/revoke")
def revoke_key(prefix: str, session: SessionDep, viewer: AdminAction) -> RedirectResponse:
    auth.revoke_key(session=session, prefix=prefix)
    audit.append(
        session=session,
        type="key.revoked",
        actor=viewer.client.actor,
        subject=f"key:{prefix}",
        data={},
    )
    return RedirectResponse("/console/keys?revoked=" + prefix, status_code=303)


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


TEMPLATES.env.filters["pretty_json"] = _json
TEMPLATES.env.globals["GROUNDS"] = GROUNDS
