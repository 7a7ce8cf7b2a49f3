"""Refuse ambiguous JSON bodies before any route reads them.

Python's parser keeps the last of repeated keys and gives up on deep nesting with a
RecursionError; another parser in front of Lethe (a proxy, a WAF, the caller's own logs)
may read the first key instead. So a JSON body that repeats a key in one object, or nests
deeper than `MAX_DEPTH`, is answered 422 problem+json saying what to fix, and nothing runs.
Anything else (malformed JSON included) goes on to the route, whose own validation answers.
The body is already bounded by `BodyLimitMiddleware`, which runs before this, and it is
read only once `AuthGate` found a route for the request and, where the route needs an
API key, authenticated it (an anonymous caller's body is never parsed). The check walks
every object with a Python hook, so it runs in a worker thread, not on the event loop.
"""

from __future__ import annotations

import json
from typing import Any

from anyio import to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from app.auth.gate import routed
from app.core.errors import Unprocessable, ValidationFailed
from app.observability.middleware import read_body, replaying, send_problem

MAX_DEPTH = 64


class _Ambiguous(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Ambiguous(f"the JSON body repeats the key {key!r} in one object; send it once")
        seen[key] = value
    return seen


def _depth(value: Any) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            break
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    return depth


def problem(body: bytes) -> Unprocessable | None:
    """Why `body` is refused, or None to let the route handle it."""
    try:
        value = json.loads(body, object_pairs_hook=_pairs)
    except _Ambiguous as exc:
        detail = str(exc)
    except RecursionError:
        detail = f"the JSON body is nested too deeply; at most {MAX_DEPTH} levels are accepted"
    except ValueError:  # not JSON, or not UTF-8: the route's validation says so
        return None
    else:
        if _depth(value) <= MAX_DEPTH:
            return None
        detail = f"the JSON body is nested too deeply; at most {MAX_DEPTH} levels are accepted"
    return ValidationFailed(detail, errors=[{"pointer": "/body", "detail": detail}])


def _is_json(scope: Scope) -> bool:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-type":
            media = value.split(b";")[0].strip().lower()
            return bool(media == b"application/json" or media.endswith(b"+json"))
    return False


class JsonBodyGuard:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in ("GET", "HEAD")
            or not _is_json(scope)
            or not routed(scope)  # the router answers 404/405 without the body
        ):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        err = await to_thread.run_sync(problem, body) if body else None
        if err is not None:
            await send_problem(send, err, scope["path"], [])
            return
        await self.app(scope, replaying(body, receive), send)
