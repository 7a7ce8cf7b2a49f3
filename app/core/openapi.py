"""The OpenAPI document: every operation lists its problem+json error responses.

Errors are added from what a route is: authenticated routes can answer 401 and 403, routes
with parameters or a body 422 (validation problems with JSON pointers), routes with path
parameters 404, POSTs that take an `Idempotency-Key` 400, 409 and 422, uploads and bodies
400 (not decodable) and 413. FastAPI's own `HTTPValidationError` is replaced by the `Problem`
schema actually served. A route that declares its own error model for a code (OpenDSR's
error shape) keeps it, listed beside the Problem that middleware may answer with.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, routing
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from app.core.errors import PROBLEM_BASE, PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details. `type` is stable; `detail` says what to fix.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "format": "uri", "examples": [PROBLEM_BASE + "not-found"]},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "validation errors: a JSON pointer into the request and what to fix",
            "items": {
                "type": "object",
                "properties": {"pointer": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
    },
    "additionalProperties": True,
}

DESCRIPTIONS = {
    "400": "Bad request: a body that is not UTF-8 JSON, a malformed Idempotency-Key, "
    "a cursor this API did not issue, or a one-value query parameter sent twice",
    "401": "Missing, unknown or revoked API key",
    "403": "The key lacks the scope, or may not act on this model",
    "404": "Not found",
    "409": "Conflict with the current state, or the same Idempotency-Key still in progress",
    "413": "Request body too large",
    "416": "Range not satisfiable",
    "422": "Validation failed (pointers in `errors`), or the Idempotency-Key was reused",
    "503": "Overloaded (more requests in flight than this server admits, or no database "
    "connection free) or a dependency is unavailable; nothing was done, retry after "
    "`Retry-After` seconds",
}


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """Every API route with its full path (included routers flattened)."""
    out: list[tuple[str, APIRoute]] = []
    for ctx in routing.iter_route_contexts(app.routes):
        route = ctx.original_route
        if isinstance(route, APIRoute):
            out.append((ctx.path or route.path, route))
    return out


def scope_of(route: APIRoute) -> str | None:
    """The scope a route's `require(...)` dependency demands, if any."""
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        scope = getattr(dep.call, "lethe_scope", None)
        if scope:
            return str(scope)
        stack.extend(dep.dependencies)
    return None


def _codes(path: str, route: APIRoute, method: str) -> list[str]:
    codes = ["503"]
    if scope_of(route) is not None:
        codes += ["401", "403"]
    if "{" in path:
        codes += ["404"]
    has_params = "{" in path or bool(route.dependant.query_params)
    if has_params or route.dependant.body_params or method in ("POST", "PUT", "PATCH"):
        codes += ["422"]
    if method in ("POST", "PUT", "PATCH", "DELETE"):
        codes += ["409", "413"]
    if route.dependant.body_params or method in ("POST", "PATCH"):
        codes += ["400"]
    if scope_of(route) is not None and route.dependant.query_params:
        codes += ["400"]  # a single-valued query parameter sent twice (app.http.deps)
    if any(p.name == "cursor" for p in route.dependant.query_params):
        codes += ["400"]
    return sorted(set(codes))


IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "replays the stored response of a retried POST (IETF "
    "draft-ietf-httpapi-idempotency-key-header): same key + same body → the same response; "
    "the same key with another body → 422; while the first attempt runs (at most "
    "`LETHE_IDEMPOTENCY_LEASE_S`) → 409 with Retry-After. 1-255 printable characters.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~][ -~]*$"},
}
OPAQUE_CURSOR: dict[str, Any] = {
    "type": "string",
    "pattern": "^[A-Za-z0-9_-]{1,512}$",
    "description": "opaque: only values this API returned as `next_cursor` are accepted",
}
CURSORS: dict[str, dict[str, Any]] = {
    "/v1/audit": {
        "type": "string",
        "pattern": "^[0-9]{1,18}$",
        "description": "the seq of the last event of the previous page",
    },
    "/v1/erasure-requests": {
        "type": "string",
        "pattern": r"^[0-9]{1,16}\.[0-9a-f-]{36}$",
        "description": "the position after the previous page: `<received_at in µs since the "
        "epoch>.<request id>`",
    },
    "/v1/models/{name}/samples": {
        "type": "string",
        "maxLength": 512,
        "pattern": "^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2,3})?$",
        "minLength": 2,
        "description": "the unpadded base64url of the sample id the previous page ended with",
    },
}
CALLBACK_URLS = (
    "http(s) URLs Lethe calls back (signed, Standard Webhooks). Every address the host "
    "resolves to must be public: loopback, private, link-local, shared, multicast and "
    "reserved ranges (IPv4 and IPv6) are refused with 422 `callback-target-refused` unless "
    "the host or range is in the server's `LETHE_CALLBACK_ALLOWED_HOSTS`; no credentials "
    "in the URL."
)


CALLBACK_URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^/?#@\s]+(?:[/?#]\S*)?$"
"""http(s), a host, no credentials: what `app.callbacks.targets` checks before resolving."""
SAFE_ID = "^[^\\x00-\\x1f\\x7f-\\x9f\\u202a-\\u202e\\u2066-\\u2069]{1,256}$"
"""A sample id: 1-256 characters without control or bidirectional-override characters."""
MODEL_NAME = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _sample_ids(schema: dict[str, Any]) -> None:
    for variant in schema.get("anyOf", [schema]):
        if variant.get("type") == "array":
            variant["items"] = {"type": "string", "pattern": SAFE_ID}


def _document_formats(components: dict[str, Any], settings: Any) -> None:
    """Formats the models do not express, so that every request the document allows is
    one the API accepts (schemathesis' positive check): the request types and identity
    formats OpenDSR requests may use and the extension naming the model, the one-of rule
    of a native request's selector, sample ids, model names, callback URLs."""
    opendsr = components.get("OpenDSRRequestCreate", {})
    props = opendsr.get("properties", {})
    if "subject_request_type" in props:
        props["subject_request_type"] = {
            **props["subject_request_type"],
            "enum": ["erasure"],
            "description": "this processor fulfils erasure requests only "
            "(GET /opendsr/v1/discovery); other types are answered 400",
        }
    domain = getattr(settings, "opendsr_processor_domain", "localhost")
    if "extensions" in props:
        props["extensions"] = {
            **props["extensions"],
            "description": f"`extensions[{domain!r}]` (this processor's domain) may name "
            "the model, and may give `sample_ids` (with the model) instead of identities. "
            "Without a model the subject is erased from every model that holds them (a key "
            "limited to one model means that model).",
            "properties": {
                domain: {
                    "type": "object",
                    "dependentRequired": {"sample_ids": ["model"]},
                    "properties": {
                        "model": {"type": "string", "pattern": MODEL_NAME},
                        "sample_ids": {
                            "type": "array",
                            "minItems": 1,
                            "items": {"type": "string", "pattern": SAFE_ID},
                        },
                    },
                }
            },
        }
    if "subject_identities" in props:
        props["subject_identities"]["minItems"] = 1
        opendsr["required"] = sorted({*opendsr.get("required", []), "subject_identities"})
    native = components.get("ErasureRequestCreate", {})
    if "sample_ids" in native.get("properties", {}):
        _sample_ids(native["properties"]["sample_ids"])
        native["oneOf"] = [
            {  # sample ids belong to one training set: the request names its model
                "required": ["sample_ids", "model"],
                "properties": {
                    "sample_ids": {"type": "array"},
                    "subject_identities": {"type": "null"},
                    "model": {"type": "string", "pattern": MODEL_NAME},
                },
            },
            {  # a subject may be erased from every model holding it (model left out or *)
                "required": ["subject_identities"],
                "properties": {
                    "subject_identities": {"type": "array"},
                    "sample_ids": {"type": "null"},
                },
            },
        ]
        native["description"] = (
            "Exactly one of `sample_ids` (with its `model`) or `subject_identities` (`model` "
            "left out or `*`: every model that holds the subject)."
        )
    registration = components.get("Body_register_model_v1_models_post", {}).get("properties", {})
    if "name" in registration:
        registration["name"]["pattern"] = MODEL_NAME
    for name, prop in registration.items():  # a form field is left out, never null
        variants = [v for v in prop.get("anyOf", []) if v.get("type") != "null"]
        if len(variants) == 1:
            prop.pop("anyOf")
            registration[name] = {**prop, **variants[0]}
        if registration[name].get("contentMediaType"):
            registration[name]["format"] = "binary"
    if "regulation" in props:
        regulation = components.get("ErasureRequestCreate", {}).get("properties", {})
        props["regulation"] = {**props["regulation"], **regulation.get("regulation", {})}
    for name in ("OpenDSRRequestCreate", "ErasureRequestCreate", "WebhookCreate"):
        props = components.get(name, {}).get("properties", {})
        for field in ("status_callback_urls", "url"):
            if field in props:
                props[field]["description"] = CALLBACK_URLS
                target = props[field].get("items", props[field])
                target["pattern"] = CALLBACK_URL_PATTERN


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
            tags=app.openapi_tags,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        components["Problem"] = PROBLEM_SCHEMA
        problem = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for path, route in api_routes(app):
            if not route.include_in_schema:
                continue
            for method in route.methods or ():
                op = schema["paths"].get(path, {}).get(method.lower())
                if op is None:
                    continue
                responses = op.setdefault("responses", {})
                own = {  # error codes the route answers with a model of its own
                    str(code)
                    for code, declared in route.responses.items()
                    if str(code)[0] in "45" and "model" in declared
                }
                for code in _codes(path, route, method):
                    existing = responses.get(code, {})
                    responses[code] = {
                        "description": existing.get("description") or DESCRIPTIONS[code],
                        "content": existing.get("content", {}),
                    }
                for code, response in responses.items():
                    if code[0] in "45":  # errors are problems, beside a route's own model
                        kept = response.get("content", {}) if code in own else {}
                        response["content"] = {**kept, **problem}
                scope = scope_of(route)
                if scope is not None:
                    op.setdefault("security", [{"HTTPBearer": []}, {"APIKeyHeader": []}])
                    note = f"Requires the `{scope}` scope (or `admin`)."
                    op["description"] = (op.get("description", "") + "\n\n" + note).strip()
                params = op.setdefault("parameters", [])
                if method in ("POST", "PATCH") and not any(
                    p.get("name") == "Idempotency-Key" for p in params
                ):
                    params.append(IDEMPOTENCY_KEY)
                for param in params:
                    if param.get("name") == "cursor" and param.get("in") == "query":
                        param["schema"] = {
                            "anyOf": [CURSORS.get(path, OPAQUE_CURSOR), {"type": "null"}]
                        }
                        param["description"] = (
                            "the `next_cursor` of the previous page, as returned; leave out "
                            "for the first page"
                        )
                if not params:
                    op.pop("parameters")
        _document_formats(components, getattr(app.state, "settings", None))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
