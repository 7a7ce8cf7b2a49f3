"""The OpenAPI document served at /openapi.json is complete: every operation has a summary
and description, documents its success schema and its problem+json 4xx responses."""

from __future__ import annotations

from typing import Any

from app.core.openapi import api_routes, scope_of

METHODS = {"get", "post", "put", "patch", "delete"}


def test_every_operation_documents_errors_and_has_a_summary(api_client: Any) -> None:
    doc = api_client.get("/openapi.json").json()
    assert doc["info"]["title"] == "Lethe"
    schemas = doc["components"]["schemas"]
    assert "Problem" in schemas and "HTTPValidationError" not in schemas
    assert "HTTPValidationError" not in str(doc)
    scopes = {
        (method.lower(), path): scope_of(route)
        for path, route in api_routes(api_client.app)
        for method in route.methods or ()
    }
    missing: list[str] = []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            if method not in METHODS:
                continue
            where = f"{method.upper()} {path}"
            if not op.get("summary") or not op.get("description"):
                missing.append(f"{where}: summary/description")
            responses = op["responses"]
            ok = [c for c in responses if c.startswith("2") or c == "304"]
            if not ok:
                missing.append(f"{where}: no success response")
            errors = [c for c in responses if c[0] in "45"]
            takes_input = "{" in path or op.get("parameters") or op.get("requestBody")
            if (takes_input or scopes.get((method, path))) and not any(
                c.startswith("4") for c in errors
            ):
                missing.append(f"{where}: no 4xx response")
            if not errors:
                missing.append(f"{where}: no error response")
            for code in errors:
                content = responses[code].get("content", {})
                ref = content.get("application/problem+json", {}).get("schema", {}).get("$ref")
                if ref != "#/components/schemas/Problem":
                    missing.append(f"{where}: {code} is not a Problem")
            if path.startswith("/v1/") and scopes.get((method, path)):
                for code in ("401", "403"):
                    if code not in responses:
                        missing.append(f"{where}: no {code}")
            if "{" in path and "404" not in responses:
                missing.append(f"{where}: no 404")
    assert not missing, "\n".join(missing)


def test_request_bodies_have_schemas_and_examples(api_client: Any) -> None:
    doc = api_client.get("/openapi.json").json()
    schemas = doc["components"]["schemas"]
    for name in (
        "ErasureRequestCreate",
        "ErasureRequestExtend",
        "ErasureRequestDeny",
        "AliasUpdate",
    ):
        assert schemas[name].get("examples"), name
    submit = doc["paths"]["/v1/erasure-requests"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in submit["parameters"])
    assert "202" in submit["responses"] and "200" in submit["responses"]
    register = doc["paths"]["/v1/models"]["post"]
    assert "multipart/form-data" in register["requestBody"]["content"]
    assert "413" in register["responses"]
    # every registration is a job: 202 with the model `validating`, never 201
    assert "202" in register["responses"] and "201" not in register["responses"]
    accepted = register["responses"]["202"]
    assert "validating" in accepted["description"] and "Location" in accepted["headers"]
    assert accepted["content"]["application/json"]["schema"]["$ref"].endswith("/ModelRead")
    download = doc["paths"]["/v1/models/{name}/versions/{number}/checkpoint"]["get"]
    assert {"200", "206", "304", "416"} <= set(download["responses"])
    assert (
        "erasure:write"
        in doc["paths"]["/v1/erasure-requests/{request_id}/deny"]["post"]["description"]
    )
