"""Errors the service raises, rendered as RFC 9457 problem+json in one place.

Every problem type a client can see is a class here, with its `type` (under
PROBLEM_BASE), status and title; nothing sets them on an instance:

    LetheError                 500 internal-error
    ├── BadRequest             400 bad-request
    ├── Unauthorized           401 unauthorized
    ├── Forbidden              403 forbidden
    ├── NotFound               404 not-found
    ├── Conflict               409 conflict
    │   ├── ModelRejected          409 model-rejected (`reason`: why its registration failed)
    │   └── IdempotencyKeyInUse    409 idempotency-key-in-use
    ├── PreconditionFailed     412 precondition-failed
    ├── PayloadTooLarge        413 payload-too-large
    ├── RangeNotSatisfiable    416 range-not-satisfiable
    ├── Unprocessable          422 unprocessable
    │   ├── ValidationFailed       422 validation-error (`errors`: a pointer per field)
    │   ├── InvalidValue           422 invalid-value (a value the database refused)
    │   ├── UnknownSamples         422 unknown-samples (lists the ids)
    │   ├── InvalidRegistration    422 invalid-registration
    │   ├── InvalidCheckpointFile  422 invalid-checkpoint
    │   ├── CheckpointMismatch     422 checkpoint-mismatch
    │   ├── InvalidTrainingSet     422 invalid-training-set
    │   └── IdempotencyKeyReused   422 idempotency-key-reused
    ├── ServiceUnavailable     503 service-unavailable
    │   └── Overloaded             503 overloaded (admission limit, or no free database
    │                              connection: sqlalchemy's pool TimeoutError)
    └── HttpError              the framework's own 4xx (unknown route 404 not-found,
                               405 method-not-allowed, else http-error)

OpenDSR routes render the same errors in the OpenDSR error shape (`app.opendsr.router`).
Each problem has a `title`, a `detail` that says what to fix, and optional extension
members.
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


class Gone(LetheError):
    status, type, title = 410, "gone", "No longer available"


class VersionRetired(Gone):
    type, title = "version-retired", "Version retired: it still contains erased data"


class ModelRejected(Conflict):
    type, title = "model-rejected", "The model was rejected at registration"


class RetiredAliasTarget(Conflict):
    type, title = "retired-version", "An alias may not point at a retired version"


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


class WrongIdentityType(Unprocessable):
    type, title = "wrong-identity-type", "Identity type not used by this model"


class ValidationFailed(Unprocessable):
    type, title = "validation-error", "Validation failed"


class InvalidValue(Unprocessable):
    type = "invalid-value"


class InvalidRegistration(Unprocessable):
    type = "invalid-registration"


class InvalidCheckpointFile(Unprocessable):
    type = "invalid-checkpoint"


class CheckpointMismatch(Unprocessable):
    type, title = "checkpoint-mismatch", "Checkpoint does not match the architecture"


class InvalidTrainingSet(Unprocessable):
    type, title = "invalid-training-set", "Invalid training set"


class IdempotencyKeyInUse(Conflict):
    type, title = "idempotency-key-in-use", "Request in progress"


class IdempotencyKeyReused(Unprocessable):
    type, title = "idempotency-key-reused", "Idempotency key reused"


class ServiceUnavailable(LetheError):
    status, type, title = 503, "service-unavailable", "Service temporarily unavailable"


class Overloaded(ServiceUnavailable):
    type, title = "overloaded", "Server overloaded"


class HttpError(LetheError):
    """An error of the framework itself (no route, wrong method, ...), with its status;
    its title is the framework's phrase."""

    _TYPES = {400: "bad-request", 404: "not-found", 405: "method-not-allowed"}

    def __init__(self, status: int, detail: str, *, headers: dict[str, str] | None = None):
        super().__init__(detail, headers=headers)
        self.status = status
        self.type = self._TYPES.get(status, "http-error")
        self.title = detail


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
        err = ValidationFailed(
            "the request is invalid: see `errors` for each field to fix", errors=errors
        )
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
        err = HttpError(exc.status_code, str(exc.detail), headers=headers)
        return problem_response(err, request)

    @app.exception_handler(DataError)
    async def _bad_value(request: Request, exc: DataError) -> JSONResponse:
        # The transaction was rolled back: a value from the request (text with a NUL
        # character, a number beyond the column's range) reached the database, which refused it.
        log.warning("database refused a value: %s", str(exc.orig).splitlines()[0])
        err = InvalidValue(
            "a value in the request cannot be stored or looked up: text must not contain NUL "
            "(\\u0000) characters and numbers must be in range; nothing was changed"
        )
        return problem_response(err, request)

    @app.exception_handler(PoolTimeout)
    async def _pool_full(request: Request, exc: PoolTimeout) -> JSONResponse:
        # `QueuePool limit ... reached`: every connection is busy; shed, do not fail
        log.warning("database pool exhausted: %s", str(exc).splitlines()[0])
        err = Overloaded(
            "the server is overloaded (no database connection free); nothing was changed, "
            "retry later",
            headers={"Retry-After": "1"},
        )
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
