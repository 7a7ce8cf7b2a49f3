"""The erasure-request contract: validation, nothing stored on refusal, auth, idempotent
duplicates, cancel, list with cursors, deadlines, and the audit chain behind it."""

from __future__ import annotations

import itertools
from typing import Any

from sqlalchemy import func, select

from tests.support.requests import dispatched_job, erasure_body, submit, training_ids
from tests.support.service import create_key


def _count_requests(rt: Any) -> int:
    from app.core.db import session_scope
    from app.erasure_requests.models import ErasureRequest

    with session_scope(rt.session_factory, None) as s:
        return s.scalar(select(func.count()).select_from(ErasureRequest)) or 0


def test_unknown_sample_ids_are_listed_and_nothing_is_stored(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    known = training_ids(seeded, limit=2)
    resp = api_client.post(
        "/v1/erasure-requests",
        json=erasure_body([*known, "no-such-1", "no-such-2"]),
        headers=admin_headers,
    )
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["type"].endswith("/unknown-samples")
    assert problem["unknown_sample_ids"] == ["no-such-1", "no-such-2"]
    assert _count_requests(seeded) == 0
    assert api_client.dispatched == []


def test_invalid_body_gets_problem_with_pointers(
    api_client: Any, admin_headers: dict[str, str]
) -> None:
    resp = api_client.post(
        "/v1/erasure-requests",
        headers=admin_headers,
        json={
            "subject_request_id": "not-a-uuid",
            "model": "digits-cnn",
            "submitted_time": "yesterday",
            "sample_ids": ["a"],
        },
    )
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["type"].endswith("/validation-error")
    pointers = {e["pointer"] for e in problem["errors"]}
    assert "/body/subject_request_id" in pointers
    assert "/body/submitted_time" in pointers


def test_both_or_neither_selector_is_refused(
    api_client: Any, admin_headers: dict[str, str]
) -> None:
    body = erasure_body(["x"])
    del body["sample_ids"]
    resp = api_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
    assert resp.status_code == 422
    assert "exactly one" in resp.text


def test_auth_is_required_and_scopes_are_enforced(api_client: Any, seeded: Any) -> None:
    body = erasure_body(training_ids(seeded, limit=1))
    assert api_client.post("/v1/erasure-requests", json=body).status_code == 401
    bad = api_client.post(
        "/v1/erasure-requests", json=body, headers={"Authorization": "Bearer lethe_nope_nope"}
    )
    assert bad.status_code == 401
    reader = {"X-API-Key": create_key(seeded, ["erasure:read"])}
    resp = api_client.post("/v1/erasure-requests", json=body, headers=reader)
    assert resp.status_code == 403 and "erasure:write" in resp.json()["detail"]
    other_model = {"X-API-Key": create_key(seeded, ["erasure:write"], models=["other"])}
    # another portal's model does not exist for this key: the answer for an unknown model
    foreign = api_client.post("/v1/erasure-requests", json=body, headers=other_model)
    unknown = api_client.post(
        "/v1/erasure-requests", json={**body, "model": "no-such-model"}, headers=other_model
    )
    assert foreign.status_code == unknown.status_code == 422
    assert foreign.json()["errors"] == unknown.json()["errors"]
    assert api_client.get("/healthz").status_code == 200
    assert _count_requests(seeded) == 0


def test_submit_get_list_cancel(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from app.core.db import session_scope
    from app.jobs.models import Job

    ids = training_ids(seeded, limit=6)
    created = []
    for i in range(3):
        accepted = submit(api_client, ids[2 * i : 2 * i + 2], admin_headers)
        created.append(accepted)
    first = created[0]
    assert first["status"] == "queued" and first["sample_count"] == 2
    assert first["days_left"] in (28, 29, 30, 31)
    assert first["overdue"] is False
    # one job per model, made after the commit: all three wait for the same job
    job_id = dispatched_job(api_client)
    # the model's job stays queued (nothing runs it), so no second job can be made: one job
    # row, dispatched once
    with session_scope(seeded.session_factory, None) as s:
        assert list(s.scalars(select(Job.id))) == [job_id]
    assert api_client.dispatched == [job_id]

    page1 = api_client.get("/v1/erasure-requests?limit=2", headers=admin_headers).json()
    assert [r["id"] for r in page1["items"]] == [c["id"] for c in created[:2]]
    page2 = api_client.get(
        f"/v1/erasure-requests?limit=2&cursor={page1['next_cursor']}", headers=admin_headers
    ).json()
    assert [r["id"] for r in page2["items"]] == [created[2]["id"]]
    assert page2["next_cursor"] is None

    resp = api_client.delete(f"/v1/erasure-requests/{first['id']}", headers=admin_headers)
    assert resp.status_code == 200 and resp.json()["status"] == "canceled"
    queued = api_client.get("/v1/erasure-requests?status=queued", headers=admin_headers).json()
    assert {r["id"] for r in queued["items"]} == {c["id"] for c in created[1:]}
    samples = api_client.get(
        f"/v1/erasure-requests/{created[1]['id']}/samples", headers=admin_headers
    ).json()
    assert samples == sorted(ids[2:4])

    # a request past the statuses that can be canceled: the answer names those that can
    denied = f"/v1/erasure-requests/{created[2]['id']}"
    resp = api_client.post(
        f"{denied}/deny", json={"ground": "legal_claims", "reason": "x"}, headers=admin_headers
    )
    assert resp.status_code == 200, resp.text
    refused = api_client.delete(denied, headers=admin_headers)
    assert refused.status_code == 409
    assert "still received or queued" in refused.json()["detail"]


def test_duplicate_subject_request_id_returns_the_original(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    body = erasure_body(training_ids(seeded, limit=3))
    first = api_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
    again = api_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
    assert first.status_code == 202 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    changed = {**body, "sample_ids": training_ids(seeded, limit=4)}
    assert (
        api_client.post("/v1/erasure-requests", json=changed, headers=admin_headers).status_code
        == 409
    )
    assert _count_requests(seeded) == 1


def test_subject_identities_find_samples_and_are_not_stored(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    ds = load_dataset(DEMO_DATASET, DEMO_PARAMS)
    subject = ds.train.subjects[0]
    expected = sorted(
        i for i, s in zip(ds.train.ids, ds.train.subjects, strict=True) if s == subject
    )
    body = erasure_body([])
    del body["sample_ids"]
    body["subject_identities"] = [{"identity_type": "user_id", "identity_value": subject}]
    resp = api_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
    assert resp.status_code == 202, resp.text
    samples = api_client.get(
        f"/v1/erasure-requests/{resp.json()['id']}/samples", headers=admin_headers
    ).json()
    assert samples == expected

    from sqlalchemy import text

    from app.core.db import session_scope

    with session_scope(seeded.session_factory, None) as s:
        for table in ("training_samples", "erasure_requests", "audit_events", "audit_pending"):
            dump = " ".join(str(r) for r in s.execute(text(f"SELECT * FROM {table}")))
            assert subject not in dump, f"raw identity stored in {table}"


def test_an_identity_of_the_wrong_type_is_refused_by_name(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    model = api_client.get("/v1/models/digits-cnn", headers=admin_headers).json()
    assert model["subject_identity_types"] == ["user_id"]
    subject = load_dataset(DEMO_DATASET, DEMO_PARAMS).train.subjects[0]
    body = erasure_body([])
    del body["sample_ids"]
    body["subject_identities"] = [
        {"identity_type": "user_id", "identity_value": subject},
        {"identity_type": "email", "identity_value": subject},
    ]
    resp = api_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
    assert resp.status_code == 422
    problem = resp.json()
    assert problem["type"].endswith("/wrong-identity-type")
    assert problem["identity_types"] == ["user_id"] and "'email'" in problem["detail"]
    assert [e["pointer"] for e in problem["errors"]] == ["/subject_identities/1/identity_type"]
    assert _count_requests(seeded) == 0
    # a subject of the right type that the model does not hold is no error: "no data held"
    # completes at once (issue 14)
    body["subject_identities"] = [{"identity_type": "user_id", "identity_value": "nobody"}]
    unknown = api_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
    assert unknown.status_code == 202 and unknown.json()["status"] == "completed"
    assert _count_requests(seeded) == 1


def test_audit_chain_records_and_verifies(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    api_client.post(
        "/v1/erasure-requests",
        json=erasure_body(training_ids(seeded, limit=1)),
        headers=admin_headers,
    )
    dispatched_job(api_client)  # its `job.created` event is in: nothing more will come
    events = api_client.get("/v1/audit", headers=admin_headers).json()["items"]
    types = [e["type"] for e in events]
    assert {"model.registered", "request.received", "job.created"} <= set(types)
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(events))
    verdict = api_client.get("/v1/audit/verify", headers=admin_headers).json()
    assert verdict["ok"] is True and verdict["checked"] == len(events)
