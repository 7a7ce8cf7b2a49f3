"""Cheap refusals first: routing and authentication before any request body is read.

`AuthGate` runs before the middlewares that read bodies (idempotency, the JSON guard)
and before the route. It finds the route the request is for; when no route takes the
path and method, nothing reads the body and the router answers 404/405. When the route
needs an API key, the key is checked here (one indexed lookup, off the event loop):

- a valid key's `Client` goes into the ASGI scope (`client_of`), so the route and the
  idempotency middleware do not look it up again;
- without a valid key the route still answers (its own 401, OpenDSR-shaped on OpenDSR
  routes), but it is handed an EMPTY body: an anonymous caller's bytes are never parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from anyio import to_thread
from fastapi import routing
from fastapi.routing import APIRoute
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.service import Client, authenticate
from app.core.errors import Overloaded, ServiceUnavailable
from app.observability.middleware import header, replaying, send_problem

_CLIENT, _ROUTE = "lethe_client", "lethe_route"


def unavailable(exc: Exception) -> ServiceUnavailable:
    """503 for a database that is down or has no free connection, in a middleware."""
    kind = Overloaded if isinstance(exc, PoolTimeout) else ServiceUnavailable
    return kind(
        "the database is unreachable or busy; nothing was changed, retry later",
        headers={"Retry-After": "1"},
    )


def token_of(scope: Scope) -> str | None:
    auth = header(scope, b"authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return header(scope, b"x-api-key") or None


def client_of(scope: Scope) -> Client | None:
    """The client `AuthGate` authenticated for this request, if any."""
    client = scope.get("state", {}).get(_CLIENT)
    return client if isinstance(client, Client) else None


def routed(scope: Scope) -> bool:
    """Whether a route takes this request's path and method (set by `AuthGate`)."""
    return bool(scope.get("state", {}).get(_ROUTE))


def _needs_key(dependant: Any) -> bool:
    return any(
        getattr(d.call, "lethe_scope", None) is not None or _needs_key(d)
        for d in dependant.dependencies
    )


@dataclass(frozen=True)
class _Entry:
    regex: re.Pattern[str]
    methods: frozenset[str]
    needs_key: bool


class RouteTable:
    """The API's routes flattened (included routers' prefixes applied): which route takes a
    path and method, and which methods a path allows."""

    def __init__(self, app: Any):
        self.app = app
        self._entries: list[_Entry] | None = None

    def entries(self) -> list[_Entry]:
        if self._entries is None:  # built on first use: routes are added after middleware
            entries = []
            for ctx in routing.iter_route_contexts(self.app.routes):
                route = ctx.original_route
                if isinstance(route, APIRoute):
                    regex, _, _ = compile_path(ctx.path or route.path)
                    methods = set(route.methods or ())
                    if "GET" in methods:
                        methods.add("HEAD")
                    entries.append(_Entry(regex, frozenset(methods), _needs_key(route.dependant)))
            self._entries = entries
        return self._entries

    def route(self, path: str, method: str) -> _Entry | None:
        return next(
            (e for e in self.entries() if method in e.methods and e.regex.match(path)), None
        )

    def allowed(self, path: str) -> list[str]:
        methods = {m for e in self.entries() if e.regex.match(path) for m in e.methods}
        return sorted(methods)


class AuthGate:
    def __init__(self, app: ASGIApp, *, table: RouteTable, session_factory: Any):
        self.app, self.table, self.factory = app, table, session_factory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        route = self.table.route(scope["path"], scope["method"])
        state[_ROUTE] = route is not None
        if route is None or not route.needs_key:
            await self.app(scope, receive, send)
            return
        token = token_of(scope)
        client = None
        if token is not None and len(token) <= 512:

            def _auth() -> Client | None:
                with self.factory() as session:
                    return authenticate(session=session, token=token)

            try:
                client = await to_thread.run_sync(_auth)
            except (OperationalError, PoolTimeout) as exc:  # outside the route's handlers
                await send_problem(send, unavailable(exc), scope["path"], [])
                return
        if client is None:  # the route answers 401 without ever seeing the body
            await self.app(scope, replaying(b"", receive), send)
            return
        state[_CLIENT] = client
        await self.app(scope, receive, send)
