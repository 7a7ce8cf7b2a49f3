"""The console's request page shows a fan-out parent with its children (one per model,
each linked, with its status and version), and a child links back to its parent; the
requests list names a parent's models instead of one model (issue 14)."""

from __future__ import annotations

import re
from typing import Any

from tests.console.test_console_auth_matrix import signed_in
from tests.support.requests import (
    add_demo_models,
    demo_subject,
    erasure_body,
    subject_body,
    training_ids,
)
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


def _counts(html: str) -> dict[str, int]:
    return {
        s: int(n) for s, n in re.findall(r'class="badge (\w+)">\w+ <strong>(\d+)</strong>', html)
    }


def test_requests_page_counts_a_fanout_once_and_lists_its_children_under_it(
    api_client: Any, seeded: Any, demo_artifacts: Any
) -> None:
    """A DPO counts data subjects' requests: a fan-out to two models is one request
    (queued), not three; its children are listed under it, not as rows of their own."""
    add_demo_models(seeded, ["digits-cnn-b"], demo_artifacts)
    key = create_key(seeded, ["admin"])
    headers = {"X-API-Key": key}
    subject, samples = demo_subject()
    parent = api_client.post("/v1/erasure-requests", json=subject_body(subject), headers=headers)
    assert parent.status_code == 202, parent.text
    parent = parent.json()
    others = [i for i in training_ids(seeded, limit=40) if i not in samples][:2]
    alone = api_client.post("/v1/erasure-requests", json=erasure_body(others), headers=headers)
    assert alone.status_code == 202, alone.text
    kids = [c["request_id"] for c in parent["children"]]
    assert len(kids) == 2

    browser, _ = signed_in(api_client.app, key)
    listing = browser.get("/console/requests").text
    counts = _counts(listing)
    assert counts["queued"] == 2 and sum(counts.values()) == 2
    # top-level rows: the parent then its two children (indented), then the standalone one
    rows = re.findall(
        r'<tr( class="child")?>\s*<td>.*?href="/console/requests/([0-9a-f-]+)"', listing
    )
    assert rows == [
        ("", parent["id"]),
        *((' class="child"', k) for k in kids),
        ("", alone.json()["id"]),
    ]
    # a status filter counts the same way
    assert _counts(browser.get("/console/requests?status=queued").text)["queued"] == 2
    # a model's own listing shows its child (that model's request) and the standalone one
    own = browser.get("/console/requests?model=digits-cnn").text
    assert kids[0] in own and alone.json()["id"] in own and kids[1] not in own

    # a key that may use only digits-cnn cannot see the parent (it also reached
    # digits-cnn-b): the child on its model stands on its own, next to the standalone one
    narrow = create_key(seeded, ["admin"], models=["digits-cnn"])
    browser, _ = signed_in(api_client.app, narrow)
    listing = browser.get("/console/requests").text
    assert _counts(listing)["queued"] == 2
    assert parent["id"] not in listing and kids[0] in listing and kids[1] not in listing
