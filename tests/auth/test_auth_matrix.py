"""Auth on every route: 401 without / with an unknown / with a revoked key, 403 with the
wrong scope; a key limited to other models (a second portal) gets what it would get for
a resource that does not exist, without any of the first portal's ids. Walks
`app.routes`, so a new route is covered (or must be declared public here) the moment it
is added. Keys: CLI create/list/revoke;
no key ever appears in the logs."""

from __future__ import annotations

import json
import logging
import re
import uuid
from typing import Any

import pytest
from fastapi.routing import APIRoute
from typer.testing import CliRunner

from app.core.openapi import api_routes, scope_of
from tests.support.requests import dispatched_job, erasure_body, training_ids
from tests.support.service import create_key

PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/opendsr/v1/discovery"),
    ("GET", "/opendsr/v1/certificate.pem"),
}
BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/v1/erasure-requests/{request_id}/extend"): {"months": 1, "reason": "complex"},
    ("POST", "/v1/erasure-requests/{request_id}/deny"): {"ground": "legal_claims", "reason": "x"},
    ("PUT", "/v1/models/{name}/aliases/{alias}"): {"version": 1},
}
MODEL_BOUND = ("{name}", "{request_id}", "{job_id}", "{subject_request_id}", "{seq}")


def _operations(app: Any) -> list[tuple[str, str, APIRoute]]:
    return [
        (method, path, route)
        for path, route in api_routes(app)
        for method in sorted(route.methods or ())
    ]


def _fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: values.get(m.group(1), "x"), path)


def _kind(resp: Any) -> str:
    """The problem type (native) or OpenDSR error reason of a refusal (HEAD: none, no body)."""
    if resp.request.method == "HEAD":
        return ""
    body = resp.json()
    if "error" in body:
        return str(body["error"]["errors"][0]["reason"])
    return str(body.get("type"))


def test_every_route_requires_a_key_with_the_right_scope_and_model(
    api_client: Any, seeded: Any
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    body = erasure_body(training_ids(seeded, limit=2))
    created = api_client.post("/v1/erasure-requests", json=body, headers=admin).json()
    values = {
        "name": "digits-cnn",
        "request_id": created["id"],
        "job_id": dispatched_job(api_client),
        "subject_request_id": created["subject_request_id"],
        "number": "1",
        "alias": "production",
        "seq": "1",
    }
    revoked = create_key(seeded, ["admin"], name="to-revoke")
    from app.auth.service import revoke_key
    from app.core.db import session_scope

    with session_scope(seeded.session_factory, None) as s:
        revoke_key(session=s, prefix=revoked.split("_")[1])

    absent = {
        **values,
        "name": "no-such-model",
        "request_id": str(uuid.uuid4()),
        "job_id": str(uuid.uuid4()),
        "subject_request_id": str(uuid.uuid4()),
        "seq": "999999999",
    }
    foreign = [created["id"], created["subject_request_id"], values["job_id"]]
    checked, failures = 0, []
    for method, path, route in _operations(api_client.app):
        scope = scope_of(route)
        if scope is None:
            assert (method, path) in PUBLIC, f"{method} {path} has no scope and is not public"
            continue
        url = _fill(path, values)
        kwargs: dict[str, Any] = {}
        if (method, path) in BODIES:
            kwargs["json"] = BODIES[(method, path)]

        def call(
            headers: dict[str, str], url: str = url, method: str = method, kw: Any = kwargs
        ) -> Any:
            return api_client.request(method, url, headers=headers, **kw)

        for headers, why in (
            ({}, "no key"),
            ({"Authorization": "Bearer lethe_000000000000_notarealsecretatall"}, "unknown key"),
            ({"Authorization": "Basic dXNlcjpwYXNz"}, "wrong scheme"),
            ({"X-API-Key": "garbage"}, "malformed key"),
            ({"X-API-Key": revoked}, "revoked key"),
        ):
            resp = call(headers)
            if resp.status_code != 401:
                failures.append(f"{method} {path} with {why}: {resp.status_code} {resp.text}")
            elif not path.startswith("/opendsr/") and not (
                resp.headers["content-type"].startswith("application/problem+json")
                and (method == "HEAD" or resp.json()["type"].endswith("/unauthorized"))
            ):
                failures.append(f"{method} {path} with {why}: not an unauthorized problem")
        other = "models:read" if scope != "models:read" else "audit:read"
        resp = call({"X-API-Key": create_key(seeded, [other])})
        if resp.status_code != 403:
            failures.append(f"{method} {path} with scope {other}: {resp.status_code} {resp.text}")
        if scope != "admin" and any(p in path for p in MODEL_BOUND):
            # the second portal: a key limited to another model. The first portal's
            # resources do not exist for it: the answer is the one for a resource that
            # does not exist at all, and names none of the first portal's ids.
            other_portal = {"X-API-Key": create_key(seeded, [scope], models=["portal-b"])}
            resp = call(other_portal)
            missing = call(other_portal, url=_fill(path, absent))
            if resp.status_code not in (400, 404, 422) or (
                resp.status_code,
                _kind(resp),
            ) != (missing.status_code, _kind(missing)):
                failures.append(
                    f"{method} {path} from the other portal: {resp.status_code} {resp.text} "
                    f"(a resource that does not exist: {missing.status_code} {missing.text})"
                )
            leaked = [v for v in foreign if v in resp.text and v not in url]
            if leaked:
                failures.append(f"{method} {path} from the other portal names {leaked}")
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked >= 15


def test_list_routes_show_only_the_keys_models(api_client: Any, seeded: Any) -> None:
    limited = {"X-API-Key": create_key(seeded, ["models:read", "erasure:read"], models=["x"])}
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    api_client.post(
        "/v1/erasure-requests", json=erasure_body(training_ids(seeded, limit=1)), headers=admin
    )
    assert api_client.get("/v1/models", headers=limited).json()["items"] == []
    assert api_client.get("/v1/erasure-requests", headers=limited).json()["items"] == []
    assert len(api_client.get("/v1/erasure-requests", headers=admin).json()["items"]) == 1


def _cli(settings: Any, monkeypatch: pytest.MonkeyPatch, *args: str) -> Any:
    from app.core import config
    from lethe.cli.main import app

    monkeypatch.setattr(config, "get_settings", lambda: settings)
    monkeypatch.setattr("lethe.cli.main.get_settings", lambda: settings)
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_keys_cli_create_list_revoke_and_no_secret_in_logs(
    api_client: Any,
    seeded: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    from app.observability.logging import configure_logging

    configure_logging("DEBUG", "json")
    caplog.set_level(logging.DEBUG)
    created = _cli(
        seeded.settings,
        monkeypatch,
        "keys",
        "create",
        "--name",
        "portal",
        "--scope",
        "erasure:write",
        "--scope",
        "erasure:read",
        "--model",
        "digits-cnn",
    )
    key = created.stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"lethe_[0-9a-f]{12}_[A-Za-z0-9_\-]{43}", key)
    prefix = key.split("_")[1]
    listed = [
        json.loads(line)
        for line in _cli(seeded.settings, monkeypatch, "keys", "list").stdout.splitlines()
    ]
    mine = next(k for k in listed if k["prefix"] == prefix)
    assert mine == {
        "prefix": prefix,
        "name": "portal",
        "scopes": ["erasure:read", "erasure:write"],
        "models": ["digits-cnn"],
        "revoked": False,
    }
    assert key not in json.dumps(listed)

    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": "auth-test-1"}
    body = erasure_body(training_ids(seeded, limit=1))
    assert api_client.post("/v1/erasure-requests", json=body, headers=headers).status_code == 202
    assert api_client.get("/v1/erasure-requests", headers=headers).status_code == 200
    assert api_client.get("/v1/models", headers=headers).status_code == 403
    _cli(seeded.settings, monkeypatch, "keys", "revoke", prefix)
    assert api_client.get("/v1/erasure-requests", headers=headers).status_code == 401
    listed = [
        json.loads(line)
        for line in _cli(seeded.settings, monkeypatch, "keys", "list").stdout.splitlines()
    ]
    assert next(k for k in listed if k["prefix"] == prefix)["revoked"] is True

    # stored only hashed
    from sqlalchemy import text

    from app.core.db import session_scope

    with session_scope(seeded.session_factory, None) as s:
        dump = " ".join(str(r) for r in s.execute(text("SELECT * FROM api_keys")))
        audit = " ".join(
            str(r)
            for table in ("audit_events", "audit_pending")
            for r in s.execute(text(f"SELECT * FROM {table}"))
        )
    secret = key.split("_", 2)[2]
    assert secret not in dump and secret not in audit
    assert any(r.getMessage().startswith("POST /v1/erasure-requests") for r in caplog.records)
    logged = "\n".join(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    logged += capfd.readouterr().err
    assert secret not in logged and key not in logged
    logging.getLogger().handlers = [
        h for h in logging.getLogger().handlers if not getattr(h, "_lethe", False)
    ]


def test_redaction_filter_scrubs_keys_that_reach_a_log_call(
    capfd: pytest.CaptureFixture[str],
) -> None:
    from app.observability.logging import configure_logging

    configure_logging("INFO", "json")
    key = f"lethe_{uuid.uuid4().hex[:12]}_{'s3cr3t' * 8}"
    logging.getLogger("lethe.test").warning("someone pasted %s into a field", key)
    err = capfd.readouterr().err
    logging.getLogger().handlers = [
        h for h in logging.getLogger().handlers if not getattr(h, "_lethe", False)
    ]
    line = json.loads(err.strip().splitlines()[-1])
    assert key not in err and "lethe_[REDACTED]" in line["message"]
