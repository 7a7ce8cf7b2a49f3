"""Who is looking at a console page, with which scopes; the CSRF check of every action.

The same `Client` and the same scope names as the API (`app.auth`): a page needs the scope
its API twin needs, an action the scope of the API call it makes. Without a valid session a
page answers 401 with the sign-in form; with the wrong scope 403; a POST without the
session's CSRF token 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Form, Request
from starlette.concurrency import run_in_threadpool

from app.auth.service import Client, client_of_key
from app.console.session import COOKIE, Sessions, SessionToken
from app.core.errors import Forbidden, Unauthorized
from app.http.deps import SessionDep
from app.registry import service as registry
from app.registry.models import Model


class SignInRequired(Unauthorized):
    """No valid console session: the page answers 401 with the sign-in form."""


class CsrfRefused(Forbidden):
    type = "csrf-refused"
    title = "CSRF token missing or wrong"


@dataclass(frozen=True)
class Viewer:
    client: Client
    token: SessionToken
    csrf: str

    def can(self, scope: str) -> bool:
        return self.client.has_scope(scope)


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.console_sessions
    return sessions


def _lookup(request: Request, token: SessionToken) -> Client | None:
    with request.app.state.session_factory() as own:  # a short read of its own (as the API)
        return client_of_key(session=own, key_id=token.key_id, prefix=token.prefix)


async def _viewer(request: Request) -> Viewer:
    sessions = sessions_of(request)
    token = sessions.read(request.cookies.get(COOKIE))
    client = await run_in_threadpool(_lookup, request, token) if token else None
    if token is None or client is None:
        raise SignInRequired("sign in with an API key to use the console")
    return Viewer(client, token, sessions.csrf_token(token))


def page(scope: str) -> Callable[..., Awaitable[Viewer]]:
    """Dependency of a page: a signed-in viewer whose key holds `scope` (or `admin`)."""

    async def _check(viewer: Annotated[Viewer, Depends(_viewer)]) -> Viewer:
        if not viewer.can(scope):
            raise Forbidden(f"your API key lacks the `{scope}` scope this page needs")
        return viewer

    _check.lethe_scope = scope  # type: ignore[attr-defined]  # read by the auth matrix test
    return _check


def action(scope: str) -> Callable[..., Awaitable[Viewer]]:
    """Dependency of a POST: as `page`, and the form's CSRF token must be the session's."""

    allowed = page(scope)

    async def _check(
        request: Request,
        viewer: Viewer = Depends(allowed),  # a default: annotations cannot see `allowed`
        csrf_token: Annotated[str, Form()] = "",
    ) -> Viewer:
        if not sessions_of(request).csrf_ok(viewer.token, csrf_token):
            raise CsrfRefused("the form's CSRF token is missing or stale; reload the page")
        return viewer

    _check.lethe_scope = scope  # type: ignore[attr-defined]
    return _check


Requests = Annotated[Viewer, Depends(page("erasure:read"))]
RequestsAction = Annotated[Viewer, Depends(action("erasure:write"))]
Models = Annotated[Viewer, Depends(page("models:read"))]
Auditor = Annotated[Viewer, Depends(page("audit:read"))]
AuditAction = Annotated[Viewer, Depends(action("audit:read"))]
Admin = Annotated[Viewer, Depends(page("admin"))]
AdminAction = Annotated[Viewer, Depends(action("admin"))]
SignedIn = Annotated[Viewer, Depends(_viewer)]


def _model(session: SessionDep, name: str, viewer: Models) -> Model:
    model = registry.get_model(session=session, name=name)
    if not viewer.client.may_use_model(model.name):
        raise Forbidden(f"your API key may not act on model {model.name!r}")
    return model


ModelDep = Annotated[Model, Depends(_model)]
