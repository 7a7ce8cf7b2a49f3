"""FastAPI dependencies shared by every router: the session and the authenticated client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any, get_args, get_origin

import anyio
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.auth.gate import client_of
from app.auth.service import Client, authenticate
from app.core.config import Settings
from app.core.db import open_session
from app.core.errors import BadRequest, Forbidden, Unauthorized
from app.idempotency.middleware import CLAIM, HANDOVER


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's transaction (as `session_scope`): committed when the endpoint returns,
    rolled back when it raises. Opening a session does no I/O, so only the commit, or the
    rollback, takes a trip to the threadpool."""
    state = request.app.state
    session = open_session(state.session_factory, state.dispatcher)
    handed = False
    try:
        yield session
        scope_state = request.scope.get("state", {})
        if CLAIM in scope_state and (session.in_transaction() or session.new or session.dirty):
            # An attempt holding an Idempotency-Key: the idempotency middleware commits the
            # route's transaction together with the response it stores.
            await run_in_threadpool(session.flush)
            scope_state[HANDOVER] = session
            handed = True
            return
        await run_in_threadpool(session.commit)
    finally:
        if handed:
            pass  # closed by the idempotency middleware
        elif session.in_transaction():  # not committed: the rollback talks to the database
            with anyio.CancelScope(shield=True):
                await run_in_threadpool(session.close)
        else:
            session.close()


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


# scope="function": the transaction commits when the endpoint returns, BEFORE the response
# is sent, so a failed commit (the database went away) is answered 503 instead of the client
# receiving a 2xx for a change that was rolled back.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer lethe_...`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="or `X-API-Key: lethe_...`")


def _client(
    request: Request,
    session: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> Client:
    checked = client_of(request.scope)  # AuthGate looked the key up already
    if checked is not None:
        return checked
    token = bearer.credentials if bearer is not None else header
    if not token:
        raise Unauthorized(
            "send an API key as `Authorization: Bearer <key>` or `X-API-Key`",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if session.get_bind().dialect.name == "sqlite":
        # On SQLite every transaction takes the write lock (BEGIN IMMEDIATE): check the key
        # in a short transaction of its own, so the request's starts only when needed.
        with request.app.state.session_factory() as own:
            client = authenticate(session=own, token=token)
    else:
        client = authenticate(session=session, token=token)  # the request's transaction

    if client is None:
        raise Unauthorized(
            "the API key is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
        )
    return client


def require(scope: str) -> Callable[..., Awaitable[Client]]:
    """Dependency: an authenticated client holding `scope` (or `admin`)."""

    async def _check(request: Request, client: Annotated[Client, Depends(_client)]) -> Client:
        if not client.has_scope(scope):
            raise Forbidden(f"this API key lacks the `{scope}` scope")
        await single_valued_query(request)  # after the key: a stranger learns nothing
        return client

    _check.lethe_scope = scope  # type: ignore[attr-defined]  # read by OpenAPI and tests
    return _check


async def single_valued_query(request: Request) -> None:
    """Refuse a query parameter given twice where the route takes one value (FastAPI would
    silently keep the last): the client meant something Lethe cannot tell."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    for param in _flat_query_params(dependant):
        if len(request.query_params.getlist(param.alias)) > 1 and not _is_sequence(param):
            raise BadRequest(f"the query parameter `{param.alias}` takes one value; send it once")


def _flat_query_params(dependant: Any) -> list[Any]:
    params = list(dependant.query_params)
    for sub in dependant.dependencies:
        params += _flat_query_params(sub)
    return params


def _is_sequence(param: Any) -> bool:
    annotation = getattr(param.field_info, "annotation", None)
    origins = {get_origin(annotation), *(get_origin(a) for a in get_args(annotation))}
    return bool(origins & {list, tuple, set, frozenset})
