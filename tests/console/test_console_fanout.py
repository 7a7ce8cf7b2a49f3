"""The console's request page shows a fan-out parent with its children (one per model,
each linked, with its status and version), and a child links back to its parent; the
requests list names a parent's models instead of one model (issue 14)."""

from __future__ import annotations

from typing import Any

from tests.console.test_console_auth_matrix import signed_in
from tests.support.requests import add_demo_models, demo_subject, subject_body
from tests.support.service import create_key


def test_request_page_lists_a_parents_children(
    api_client: Any, seeded: Any, demo_artifacts: Any
) -> None:
    add_demo_models(seeded, ["digits-cnn-b"], demo_artifacts)
    key = create_key(seeded, ["admin"])
    subject, _ = demo_subject()
    parent = api_client.post(
        "/v1/erasure-requests", json=subject_body(subject), headers={"X-API-Key": key}
    ).json()
    browser, _ = signed_in(api_client.app, key)
    page = browser.get(f"/console/requests/{parent['id']}")
    assert page.status_code == 200, page.text
    assert 'id="children"' in page.text and "every model holding the subject: 2" in page.text
    for child in parent["children"]:
        assert f"/console/requests/{child['request_id']}" in page.text
        assert f"/console/models/{child['model']}" in page.text
    first = parent["children"][0]["request_id"]
    child_page = browser.get(f"/console/requests/{first}")
    assert child_page.status_code == 200
    assert f"/console/requests/{parent['id']}" in child_page.text
    listing = browser.get("/console/requests")
    assert listing.status_code == 200 and "every model (2)" in listing.text
