"""ASGI middleware: request id + access log + request metrics; request body size limits.

Pure ASGI (not BaseHTTPMiddleware) so streamed downloads and uploads stay streamed.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from typing import Any

from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PROBLEM_JSON, PayloadTooLarge
from app.observability.logging import request_id_var
from app.observability.metrics import Metrics

log = logging.getLogger("lethe.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def send_problem(send: Send, err: Any, path: str, extra_headers: list[Any]) -> None:
    body = json.dumps(err.to_problem(instance=path)).encode()
    headers = [
        (b"content-type", PROBLEM_JSON.encode()),
        (b"content-length", str(len(body)).encode()),
        *extra_headers,
    ]
    for name, value in (err.headers or {}).items():
        headers.append((name.lower().encode(), value.encode()))
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A `receive` for the app that first hands it the `body` read already, then defers to
    the server's (disconnect notices)."""
    replayed = False

    async def _receive() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return _receive


def route_template(scope: Scope) -> str:
    """The route's path template for metrics and logs. FastAPI marks the API routes it
    matched; the application's own plain routes (`/docs`, `/redoc`, `/openapi.json`) are
    looked up here, so only a path that matches no route is counted as `unmatched`."""
    route = scope.get("route")
    if route is None:
        app = scope.get("app")
        route = next(
            (r for r in getattr(app, "routes", ()) if r.matches(scope)[0] is Match.FULL), None
        )
    return getattr(route, "path", None) or "unmatched"


class RequestContextMiddleware:
    """`X-Request-ID` in (kept when well-formed) and out; one JSON access-log line; metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope, b"x-request-id")
        rid = given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex
        token = request_id_var.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        started = time.perf_counter()

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", rid.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            elapsed = time.perf_counter() - started
            template = route_template(scope)
            self.metrics.requests.labels(scope["method"], template, str(status)).inc()
            self.metrics.latency.labels(template).observe(elapsed)
            log.info(
                "%s %s %s",
                scope["method"],
                template,
                status,
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )
            request_id_var.reset(token)


class BodyLimitMiddleware:
    """413 problem+json for bodies over the limit: at once from Content-Length, or as soon
    as a chunked body passes it (such a body is read before the app sees any of it)."""

    def __init__(self, app: ASGIApp, *, default: int, uploads: dict[str, int]):
        self.app, self.default, self.uploads = app, default, uploads

    def limit(self, scope: Scope) -> int:
        return self.uploads.get(f"{scope['method']} {scope['path'].rstrip('/')}", self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.limit(scope)
        declared = header(scope, b"content-length")
        too_large = PayloadTooLarge(
            f"the request body exceeds the limit of {limit} bytes for this route",
            limit_bytes=limit,
        )
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_problem(send, too_large, scope["path"], [(b"connection", b"close")])
            return
        if declared is not None and declared.isdigit():
            await self.app(scope, receive, send)  # the server enforces Content-Length framing
            return
        # No Content-Length (chunked): read up to the limit before the app sees anything.
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > limit:
                await send_problem(send, too_large, scope["path"], [(b"connection", b"close")])
                return
            chunks.append(chunk)
            if not message.get("more_body"):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)
