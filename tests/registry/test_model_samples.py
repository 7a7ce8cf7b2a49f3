"""`GET /v1/models/{name}/samples`: a user finds the sample ids an erasure request can name,
with label, whether a subject is recorded (never the subject) and the erasing version."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import select

from tests.support.requests import erasure_body, training_ids, wait_for_status
from tests.support.service import create_key

URL = "/v1/models/digits-cnn/samples"


def _manifest(rt: Any) -> dict[str, tuple[int, bool]]:
    from app.core.db import session_scope
    from app.registry.models import Model, TrainingSample

    with session_scope(rt.session_factory, None) as s:
        rows = s.execute(
            select(TrainingSample.sample_id, TrainingSample.label, TrainingSample.subject_ref)
            .join(Model, Model.id == TrainingSample.model_id)
            .where(Model.name == "digits-cnn")
        ).all()
    return {r.sample_id: (r.label, r.subject_ref is not None) for r in rows}


def _all_pages(client: Any, headers: dict[str, str], query: str = "") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        url = f"{URL}?limit=250{query}" + (f"&cursor={cursor}" if cursor else "")
        resp = client.get(url, headers=headers)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        items += body["items"]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages > 1  # the demo's training set spans several pages
    return items


def test_lists_every_training_sample_once_across_pages(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    items = _all_pages(api_client, admin_headers)
    manifest = _manifest(seeded)
    assert {i["sample_id"] for i in items} == set(manifest) and len(items) == len(manifest)
    for item in items:
        assert set(item) == {"sample_id", "label", "has_subject", "erased_in_version"}
        assert (item["label"], item["has_subject"]) == manifest[item["sample_id"]]
        assert item["erased_in_version"] is None
    assert any(i["has_subject"] for i in items)  # the demo records subjects, never shown
    # the listed ids are ones a request can name
    resp = api_client.post(
        "/v1/erasure-requests", json=erasure_body([items[0]["sample_id"]]), headers=admin_headers
    )
    assert resp.status_code == 202, resp.text


def test_erased_samples_show_the_version_that_erased_them(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    ids = training_ids(seeded, limit=2)
    resp = embedded_client.post(
        "/v1/erasure-requests", json=erasure_body(ids), headers=admin_headers
    )
    assert resp.status_code == 202, resp.text
    done = wait_for_status(embedded_client, resp.json()["id"], admin_headers)
    erased = embedded_client.get(f"{URL}?erased=true", headers=admin_headers).json()
    assert [(i["sample_id"], i["erased_in_version"]) for i in erased["items"]] == [
        (s, done["result_version"]) for s in sorted(ids)
    ]
    kept = embedded_client.get(f"{URL}?erased=false&limit=1000", headers=admin_headers).json()
    assert not {i["sample_id"] for i in kept["items"]} & set(ids)


def test_scoped_like_the_model_and_refuses_foreign_cursors(api_client: Any, seeded: Any) -> None:
    def status(scopes: list[str], models: list[str] | None = None, url: str = URL) -> int:
        key = create_key(seeded, scopes, models, name="samples")
        return int(api_client.get(url, headers={"X-API-Key": key}).status_code)

    assert api_client.get(URL).status_code == 401
    assert status(["erasure:read"]) == 403
    # another portal's model does not exist for a key limited to its own (issue 15)
    assert status(["models:read"], ["other-model"]) == 404
    assert status(["models:read"], ["digits-cnn"]) == 200
    assert status(["models:read"], url="/v1/models/nope/samples") == 404
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    for cursor in ("%%%", ""):  # an empty cursor was never issued either
        resp = api_client.get(f"{URL}?cursor={cursor}", headers=admin)
        assert resp.status_code == 400 and "cursor" in resp.json()["detail"], cursor
    # a well-formed cursor that decodes to text with a NUL lists after the text before it
    nul = base64.urlsafe_b64encode(b"digits-0001\x00junk").decode().rstrip("=")
    after = api_client.get(f"{URL}?cursor={nul}&limit=3", headers=admin)
    assert after.status_code == 200, after.text
    plain = base64.urlsafe_b64encode(b"digits-0001").decode().rstrip("=")
    assert (
        after.json()["items"]
        == (api_client.get(f"{URL}?cursor={plain}&limit=3", headers=admin).json()["items"])
    )


def test_in_openapi_with_a_stable_operation_id(api_client: Any) -> None:
    op = api_client.get("/openapi.json").json()["paths"]["/v1/models/{name}/samples"]["get"]
    assert op["operationId"] == "models-list-samples"
    assert {p["name"] for p in op["parameters"]} >= {"name", "cursor", "limit", "erased"}
    assert "models:read" in op["description"]
