"""Errors the service raises, rendered as RFC 9457 problem+json in one place.

    LetheError (500)
    ├── BadRequest (400)
    ├── Unauthorized (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── Conflict (409)
    ├── PreconditionFailed (412)
    ├── PayloadTooLarge (413)
    ├── RangeNotSatisfiable (416)
    ├── Unprocessable (422)
    │   └── UnknownSamples (422, lists the ids)
    │   (a value the database refuses, sqlalchemy's DataError, is answered 422 too)
    └── ServiceUnavailable (503)
        (an exhausted database pool, sqlalchemy's TimeoutError, is answered 503 too, as
        are requests beyond the admission limit: `app.core.admission`)

Every problem has a stable `type` URI under PROBLEM_BASE, a `title`, a `detail`
that says what to fix, and optional extension members.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

PROBLEM_BASE = "https://lethe.dev/problems/"
PROBLEM_JSON = "application/problem+json"
# what FastAPI says when a body is not decodable at all (e.g. not UTF-8)
_UNPARSEABLE_BODY = "There was an error parsing the body"

log = logging.getLogger("lethe.errors")


class LetheError(Exception):
    status = 500
    type = "internal-error"
    title = "Internal server error"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail
        self.headers = headers
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class BadRequest(LetheError):
    status, type, title = 400, "bad-request", "Bad request"


class Unauthorized(LetheError):
    status, type, title = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(LetheError):
    status, type, title = 403, "forbidden", "Not allowed"


class NotFound(LetheError):
    status, type, title = 404, "not-found", "Not found"


class Conflict(LetheError):
    status, type, title = 409, "conflict", "Conflict with the current state"


class PreconditionFailed(LetheError):
    status, type, title = 412, "precondition-failed", "Precondition failed"


class PayloadTooLarge(LetheError):
    status, type, title = 413, "payload-too-large", "Request body too large"


class RangeNotSatisfiable(LetheError):
    status, type, title = 416, "range-not-satisfiable", "Range not satisfiable"


class Unprocessable(LetheError):
    status, type, title = 422, "unprocessable", "The request cannot be processed"


class UnknownSamples(Unprocessable):
    type, title = "unknown-samples", "Unknown sample ids"


class ServiceUnavailable(LetheError):
    status, type, title = 503, "service-unavailable", "Service temporarily unavailable"


def problem_response(err: LetheError, request: Request) -> JSONResponse:
    return JSONResponse(
        err.to_problem(instance=request.url.path),
        status_code=err.status,
        media_type=PROBLEM_JSON,
        headers=err.headers,
    )


def _pointer(loc: tuple[Any, ...]) -> str:
    return "/" + "/".join(str(p).replace("~", "~0").replace("/", "~1") for p in loc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LetheError)
    async def _lethe(request: Request, exc: LetheError) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"pointer": _pointer(tuple(e.get("loc", ()))), "detail": e.get("msg", "invalid")}
            for e in exc.errors()
        ]
        err = Unprocessable(
            "the request is invalid: see `errors` for each field to fix", errors=errors
        )
        err.type = "validation-error"
        err.title = "Validation failed"
        return problem_response(err, request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == _UNPARSEABLE_BODY:
            return problem_response(
                BadRequest("the request body could not be decoded: send UTF-8 encoded JSON"),
                request,
            )
        headers = dict(exc.headers or {})
        routes = getattr(request.app.state, "routes", None)
        if exc.status_code == 405 and routes is not None:  # every method the path takes
            headers["Allow"] = ", ".join(routes.allowed(request.url.path))
        err = LetheError(str(exc.detail), headers=headers)
        err.status = exc.status_code
        err.type = {400: "bad-request", 404: "not-found", 405: "method-not-allowed"}.get(
            exc.status_code, "http-error"
        )
        err.title = str(exc.detail)
        return problem_response(err, request)

    @app.exception_handler(DataError)
    async def _bad_value(request: Request, exc: DataError) -> JSONResponse:
        # The transaction was rolled back: a value from the request (text with a NUL
        # character, a number beyond the column's range) reached the database, which refused it.
        log.warning("database refused a value: %s", str(exc.orig).splitlines()[0])
        err = Unprocessable(
            "a value in the request cannot be stored or looked up: text must not contain NUL "
            "(\\u0000) characters and numbers must be in range; nothing was changed"
        )
        err.type = "invalid-value"
        return problem_response(err, request)

    @app.exception_handler(PoolTimeout)
    async def _pool_full(request: Request, exc: PoolTimeout) -> JSONResponse:
        # `QueuePool limit ... reached`: every connection is busy; shed, do not fail
        log.warning("database pool exhausted: %s", str(exc).splitlines()[0])
        err = ServiceUnavailable(
            "the server is overloaded (no database connection free); nothing was changed, "
            "retry later",
            headers={"Retry-After": "1"},
        )
        err.type, err.title = "overloaded", "Server overloaded"
        return problem_response(err, request)

    @app.exception_handler(OperationalError)
    async def _db_down(request: Request, exc: OperationalError) -> JSONResponse:
        log.warning("database unavailable: %s", exc.__class__.__name__)
        err = ServiceUnavailable(
            "the database is unreachable; nothing was changed, retry later",
            headers={"Retry-After": "5"},
        )
        return problem_response(err, request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(LetheError("an unexpected error occurred"), request)
