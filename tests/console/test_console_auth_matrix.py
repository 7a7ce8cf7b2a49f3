"""Auth on every console route, as tests/auth/test_auth_matrix.py does for the API: walks
the console's routes, so a new page or action is covered (or must be declared public here)
the moment it is added. Without a session a browser is sent to the sign-in form (303) and
anything else gets 401; a revoked key's or a tampered session 401; the wrong scope 403; a
key limited to other models finds no such request or model (404, as the API answers
another portal's resources) or is refused (403); a POST without the session's CSRF
token 403; the right session succeeds. The scopes are the API's: the same
`page(scope)`/`action(scope)` table."""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from app.core.openapi import api_routes, scope_of
from tests.support.requests import submit, training_ids
from tests.support.service import create_key

PUBLIC = {
    ("GET", "/"),
    ("GET", "/sign-in"),
    ("POST", "/sign-in"),
    ("POST", "/sign-out"),
}
FORMS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/requests/{request_id}/deny"): {"ground": "legal_claims", "reason": "x"},
    ("POST", "/requests/{request_id}/extend"): {"months": "1", "reason": "complex"},
    ("POST", "/keys"): {"name": "n", "scopes": "erasure:read"},
}
MODEL_BOUND = ("{name}", "{request_id}")
HTML = {"Accept": "text/html"}


def console_routes(app: Any) -> list[tuple[str, str, APIRoute]]:
    mount = next(r for r in app.routes if getattr(r, "path", "") == "/console")
    console = mount.app.app  # SecurityHeaders(FastAPI)
    return [
        (method, path, route)
        for path, route in api_routes(console)
        for method in sorted(route.methods or ())
    ]


def signed_in(app: Any, key: str) -> tuple[TestClient, str]:
    client = TestClient(app)
    page = client.get("/console/sign-in")
    token = re.search(r'name="signin_token" value="([^"]+)"', page.text)
    assert token
    r = client.post(
        "/console/sign-in",
        data={"api_key": key, "signin_token": token.group(1)},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    for page_path in ("/console/requests", "/console/models", "/console/audit", "/console/keys"):
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get(page_path).text)
        if csrf:
            return client, csrf.group(1)
    return client, ""


def test_every_console_route_needs_a_session_with_the_right_scope_and_token(
    api_client: Any, seeded: Any
) -> None:
    app = api_client.app
    admin_key = create_key(seeded, ["admin"])
    created = submit(api_client, training_ids(seeded, limit=2), {"X-API-Key": admin_key})
    to_extend = submit(api_client, training_ids(seeded, limit=4)[2:], {"X-API-Key": admin_key})
    victim = create_key(seeded, ["erasure:read"], name="victim")
    values = {
        "request_id": created["id"],
        "name": "digits-cnn",
        "number": "1",
        "prefix": victim.split("_")[1],
    }
    revoked_key = create_key(seeded, ["admin"], name="to-revoke")
    revoked, _ = signed_in(app, revoked_key)
    from app.auth.service import revoke_key
    from app.core.db import session_scope

    with session_scope(seeded.session_factory, None) as s:
        revoke_key(session=s, prefix=revoked_key.split("_")[1])
    tampered = TestClient(app)
    tampered.cookies.set("lethe_console", "eyJrIjoxfQ.forged.signature", path="/console")

    failures, checked = [], 0
    for method, path, route in console_routes(app):
        scope = scope_of(route)
        if scope is None:
            assert (method, path) in PUBLIC, f"{method} {path} has no scope and is not public"
            continue
        filled = {**values, "request_id": to_extend["id"]} if path.endswith("/extend") else values
        url = "/console" + re.sub(r"\{(\w+)\}", lambda m, f=filled: f[m.group(1)], path)

        def call(
            client: TestClient,
            csrf: str | None = None,
            url: str = url,
            method: str = method,
            form: dict[str, Any] = FORMS.get((method, path), {}),
            **kw: Any,
        ) -> Any:
            data = {**form, **({"csrf_token": csrf} if csrf is not None else {})}
            if method == "GET":
                return client.get(url, follow_redirects=False, **kw)
            return client.post(url, data=data, follow_redirects=False, **kw)

        r = call(TestClient(app), headers=HTML)
        if method == "GET" and not (r.status_code == 303 and "/sign-in" in r.headers["location"]):
            failures.append(f"{method} {path} browser without session: {r.status_code}")
        for client, why in (
            (TestClient(app), "no session"),
            (revoked, "revoked key"),
            (tampered, "tampered cookie"),
        ):
            r = call(client)
            if r.status_code != 401:
                failures.append(f"{method} {path} with {why}: {r.status_code}")
        other = "models:read" if scope != "models:read" else "audit:read"
        wrong, wrong_csrf = signed_in(app, create_key(seeded, [other]))
        r = call(wrong, wrong_csrf)
        if r.status_code != 403:
            failures.append(f"{method} {path} with scope {other}: {r.status_code}")
        if scope != "admin" and any(p in path for p in MODEL_BOUND):
            limited, limited_csrf = signed_in(app, create_key(seeded, [scope], models=["x"]))
            r = call(limited, limited_csrf)
            # another portal's request or model does not exist for this key (as in the API)
            if r.status_code not in (403, 404):
                failures.append(f"{method} {path} other model: {r.status_code}")
        # erasure:write alone opens no page; a DPO's key reads requests too
        scopes = [scope, "erasure:read"] if scope == "erasure:write" else [scope]
        right, right_csrf = signed_in(app, create_key(seeded, scopes))
        if method == "POST":
            for csrf, why in ((None, "no token"), ("0" * 64, "a wrong token")):
                r = call(right, csrf)
                if r.status_code != 403 or "CSRF" not in r.text:
                    failures.append(f"{method} {path} with {why}: {r.status_code}")
        r = call(right, right_csrf)
        if r.status_code not in (200, 201, 303):
            failures.append(f"{method} {path} with scope {scope}: {r.status_code} {r.text[:300]}")
        checked += 1
    assert not failures, "\n".join(failures)
    assert checked >= 12
    # nothing the refused calls sent changed anything: the one request is denied only by
    # the authorised call, the victim key revoked only by it
    after = api_client.get(
        f"/v1/erasure-requests/{created['id']}", headers={"X-API-Key": admin_key}
    ).json()
    assert after["status"] == "denied" and after["status_reason"] == "x"


def test_session_cookie_is_strict_httponly_expiring_and_holds_no_key(
    api_client: Any, seeded: Any
) -> None:
    key = create_key(seeded, ["audit:read"])
    client = TestClient(api_client.app)
    page = client.get("/console/sign-in")
    token = re.search(r'name="signin_token" value="([^"]+)"', page.text)
    assert token
    r = client.post(
        "/console/sign-in",
        data={"api_key": key, "signin_token": token.group(1)},
        follow_redirects=False,
    )
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=28800" in cookie
    assert "Path=/console" in cookie and "Secure" not in cookie  # plain http in the test
    assert key.split("_", 2)[2] not in cookie
    secure = TestClient(api_client.app, base_url="https://testserver")
    page = secure.get("/console/sign-in")
    token = re.search(r'name="signin_token" value="([^"]+)"', page.text)
    assert token
    r = secure.post(
        "/console/sign-in",
        data={"api_key": key, "signin_token": token.group(1)},
        follow_redirects=False,
    )
    assert "Secure" in r.headers["set-cookie"]
    # a sign-in form not served by this console (no matching cookie) is refused
    r = TestClient(api_client.app).post(
        "/console/sign-in", data={"api_key": key, "signin_token": "x"}, follow_redirects=False
    )
    assert r.status_code == 403


# Each console route and the API route it mirrors: the console must demand the same scope.
TWINS = {
    ("GET", "/requests"): ("GET", "/v1/erasure-requests"),
    ("GET", "/requests/{request_id}"): ("GET", "/v1/erasure-requests/{request_id}"),
    ("GET", "/requests/{request_id}/progress"): ("GET", "/v1/jobs/{job_id}"),
    ("POST", "/requests/{request_id}/deny"): ("POST", "/v1/erasure-requests/{request_id}/deny"),
    ("POST", "/requests/{request_id}/extend"): (
        "POST",
        "/v1/erasure-requests/{request_id}/extend",
    ),
    ("GET", "/models"): ("GET", "/v1/models"),
    ("GET", "/models/{name}"): ("GET", "/v1/models/{name}/versions"),
    ("GET", "/models/{name}/versions/{number}"): ("GET", "/v1/models/{name}/versions/{number}"),
    ("GET", "/audit"): ("GET", "/v1/audit"),
    ("POST", "/audit/verify"): ("GET", "/v1/audit/verify"),
    ("GET", "/audit/export.jsonl"): ("GET", "/v1/audit"),
}
ADMIN_ONLY = {("GET", "/keys"), ("POST", "/keys"), ("POST", "/keys/{prefix}/revoke")}
"""Keys are managed with the CLI on the API side; in the console only `admin` may."""


def test_console_routes_demand_the_scopes_of_their_api_twins(api_client: Any) -> None:
    app = api_client.app
    api = {(m, p): scope_of(r) for p, r in api_routes(app) for m in r.methods or ()}
    for method, path, route in console_routes(app):
        if (method, path) in PUBLIC:
            continue
        if (method, path) in ADMIN_ONLY:
            assert scope_of(route) == "admin", (method, path)
            continue
        assert (method, path) in TWINS, f"{method} {path}: name the API route it mirrors"
        assert scope_of(route) == api[TWINS[(method, path)]], (method, path)
