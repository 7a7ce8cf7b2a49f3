"""Subject fan-out (issue 14): a request by subject identities that names no model erases
the subject from every model that holds them, as one parent request with one child per
model; the parent's status, deadline, receipt and audit trail summarise the children."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from tests.support.requests import (
    add_demo_models,
    demo_subject,
    subject_body,
    wait_for_status,
)
from tests.support.services import wait_until

MODELS = ["digits-cnn", "digits-cnn-b", "digits-cnn-c"]


def _requests_stored(rt: Any) -> int:
    from app.core.db import session_scope
    from app.erasure_requests.models import ErasureRequest

    with session_scope(rt.session_factory, None) as s:
        return s.scalar(select(func.count()).select_from(ErasureRequest)) or 0


def _dump(rt: Any) -> str:
    """Every row of the tables a request writes, as one string."""
    from app.core.db import session_scope

    with session_scope(rt.session_factory, None) as s:
        return " ".join(
            str(r)
            for table in ("erasure_requests", "audit_events", "audit_pending")
            for r in s.execute(text(f"SELECT * FROM {table}"))
        )


def _events(client: Any, headers: dict[str, str], request_id: str) -> list[dict[str, Any]]:
    resp = client.get(f"/v1/audit?subject=request:{request_id}", headers=headers)
    assert resp.status_code == 200, resp.text
    return list(resp.json()["items"])


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_fanout_across_three_models_completes_with_each_version(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str], demo_artifacts: Any
) -> None:
    client, headers = embedded_client, admin_headers
    add_demo_models(seeded, MODELS[1:], demo_artifacts)
    subject, samples = demo_subject()
    resp = client.post("/v1/erasure-requests", json=subject_body(subject), headers=headers)
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert accepted["model"] is None and accepted["models"] == MODELS
    assert accepted["sample_count"] == 3 * len(samples)

    done = wait_for_status(client, accepted["id"], headers, timeout=300)
    assert done["status"] == "completed" and done["status_reason"] is None
    assert [c["model"] for c in done["children"]] == MODELS
    for child in done["children"]:
        assert child["status"] == "completed" and child["result_version"] == 2
        # each child is an ordinary request of its model, pointing at its parent
        own = client.get(f"/v1/erasure-requests/{child['request_id']}", headers=headers).json()
        assert own["model"] == child["model"] and own["parent_id"] == accepted["id"]
        assert own["subject_request_id"] == accepted["subject_request_id"]
        erased = client.get(
            f"/v1/erasure-requests/{child['request_id']}/samples", headers=headers
        ).json()
        assert erased == samples
        version = client.get(f"/v1/models/{child['model']}/versions/2", headers=headers).json()
        assert set(samples) <= set(version["erased_sample_ids"])

    # the parent's receipt summarises the children, and its final event is audited
    signed = client.get(f"/v1/erasure-requests/{accepted['id']}/receipt", headers=headers)
    assert signed.status_code == 200, signed.text
    receipt = signed.json()["receipt"]
    assert receipt["request"]["models"] == MODELS and receipt["status"] == "completed"
    outcome = receipt["outcome"]
    assert outcome["erased_sample_count"] == 3 * len(samples)
    assert [(m["model"], m["result_version"]) for m in outcome["models"]] == [
        (m, 2) for m in MODELS
    ]
    assert receipt["audit"]["event_type"] == "request.completed"
    types = [e["type"] for e in _events(client, headers, accepted["id"])]
    assert types == ["request.received", "request.completed"]

    # a repeat of the same fan-out is the same parent: no new children, no new job
    stored = _requests_stored(seeded)
    again = client.post(
        "/v1/erasure-requests",
        json={**subject_body(subject), "subject_request_id": accepted["subject_request_id"]},
        headers=headers,
    )
    assert again.status_code == 200 and again.json()["id"] == accepted["id"]
    assert _requests_stored(seeded) == stored


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.overrides(request_max_attempts=1, job_max_attempts=1)
def test_one_models_failed_job_fails_the_parent_with_each_reason(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str], demo_artifacts: Any
) -> None:
    from app.core.db import session_scope
    from app.registry.models import Model

    client, headers = embedded_client, admin_headers
    add_demo_models(seeded, MODELS[1:], demo_artifacts)
    with session_scope(seeded.session_factory, None) as s:  # its training data is gone
        s.execute(update(Model).where(Model.name == "digits-cnn-b").values(dataset_id="gone"))
    subject, _ = demo_subject()
    parent = client.post("/v1/erasure-requests", json=subject_body(subject), headers=headers)
    assert parent.status_code == 202, parent.text
    done = wait_for_status(client, parent.json()["id"], headers, ("failed",), timeout=300)
    by_model = {c["model"]: c for c in done["children"]}
    # nothing lost: the other models' erasures are published, the failed one says why
    assert by_model["digits-cnn"]["status"] == "completed"
    assert by_model["digits-cnn-c"]["status"] == "completed"
    assert by_model["digits-cnn-b"]["status"] == "failed"
    reason = by_model["digits-cnn-b"]["status_reason"]
    assert reason and "gone" in reason
    assert done["status_reason"].startswith("1 of 3 model(s) failed")
    assert f"'digits-cnn-b': {reason}" in done["status_reason"]
    receipt = client.get(f"/v1/erasure-requests/{done['id']}/receipt", headers=headers).json()
    assert receipt["receipt"]["status"] == "failed"
    assert receipt["receipt"]["audit"]["event_type"] == "request.failed"


def test_a_subject_no_model_holds_completes_at_once_audited(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    client, headers = api_client, admin_headers
    resp = client.post("/v1/erasure-requests", json=subject_body("nobody-at-all"), headers=headers)
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["status"] == "completed" and body["models"] == [] and body["children"] == []
    assert body["status_reason"].startswith("no data held")
    events = _events(client, headers, body["id"])
    assert [e["type"] for e in events] == ["request.received", "request.completed"]
    assert events[-1]["data"]["no_data_held"] is True
    receipt = client.get(f"/v1/erasure-requests/{body['id']}/receipt", headers=headers).json()
    assert receipt["receipt"]["outcome"]["no_data_held"] is True
    assert receipt["receipt"]["outcome"]["models"] == []
    assert client.dispatched == []  # no job for nobody
    # `*` is the same as leaving the model out
    star = client.post(
        "/v1/erasure-requests", json=subject_body("nobody-at-all", model="*"), headers=headers
    )
    assert star.status_code == 202 and star.json()["models"] == []
    assert "nobody-at-all" not in _dump(seeded)  # only keyed hashes are stored


def test_bad_fanout_input_is_refused_and_stores_nothing(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    client, headers = api_client, admin_headers
    subject, samples = demo_subject()
    # sample ids belong to one training set: they still name their model
    body = subject_body(subject)
    del body["subject_identities"]
    body["sample_ids"] = samples
    resp = client.post("/v1/erasure-requests", json=body, headers=headers)
    assert resp.status_code == 422 and "names its `model`" in resp.text
    # an identity type no model uses: 422 listing the types the models use
    body = subject_body(subject)
    body["subject_identities"][0]["identity_type"] = "email"
    resp = client.post("/v1/erasure-requests", json=body, headers=headers)
    assert resp.status_code == 422, resp.text
    assert resp.json()["identity_types"] == ["user_id"]
    # an identity type Lethe does not know: 422 listing the known ones
    body["subject_identities"][0]["identity_type"] = "passport"
    resp = client.post("/v1/erasure-requests", json=body, headers=headers)
    assert resp.status_code == 422 and "'email'" in resp.text and "'user_id'" in resp.text
    assert _requests_stored(seeded) == 0


def test_parent_cancel_and_deny_apply_to_every_child(
    api_client: Any, seeded: Any, admin_headers: dict[str, str], demo_artifacts: Any
) -> None:
    client, headers = api_client, admin_headers  # nothing runs the jobs: children stay queued
    add_demo_models(seeded, MODELS[1:], demo_artifacts)
    subject, _ = demo_subject()
    other, _ = demo_subject(1)
    first = client.post("/v1/erasure-requests", json=subject_body(subject), headers=headers).json()
    assert first["status"] == "queued" and len(first["children"]) == 3
    canceled = client.delete(f"/v1/erasure-requests/{first['id']}", headers=headers)
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    assert {c["status"] for c in canceled.json()["children"]} == {"canceled"}

    second = client.post("/v1/erasure-requests", json=subject_body(other), headers=headers).json()
    denial = {"ground": "legal_claims", "reason": "evidence in case 2026-C-114"}
    denied = client.post(
        f"/v1/erasure-requests/{second['id']}/deny", json=denial, headers=headers
    ).json()
    assert denied["status"] == "denied" and denied["denial_ground"] == "legal_claims"
    assert denied["status_reason"] == denial["reason"]
    assert {c["status"] for c in denied["children"]} == {"denied"}
    receipt = client.get(f"/v1/erasure-requests/{second['id']}/receipt", headers=headers).json()
    assert receipt["receipt"]["audit"]["event_type"] == "request.denied"


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_fanout_failed_everywhere_with_long_reasons_fails_the_parent(
    api_client: Any, seeded: Any, admin_headers: dict[str, str], demo_artifacts: Any
) -> None:
    """The parent lists every child's reason: with many models (or one long error) that
    is more than the column holds, and PostgreSQL refused the transaction that failed the
    last job, which then stayed `running` and the parent open (issue 14's benchmark, 20
    models). The stored reasons are clipped; each child keeps its own."""
    from app.core.db import session_scope
    from app.jobs import attempt

    client, headers = api_client, admin_headers
    add_demo_models(seeded, MODELS[1:], demo_artifacts)
    subject, _ = demo_subject()
    parent = client.post("/v1/erasure-requests", json=subject_body(subject), headers=headers)
    assert parent.status_code == 202, parent.text
    wait_until(lambda: len(client.dispatched) == len(MODELS), timeout=30, what="3 jobs")
    settings = seeded.settings.model_copy(update={"request_max_attempts": 1})
    error = "RuntimeError: " + "the engine said no. " * 100  # 2,014 characters
    for job_id in client.dispatched:
        with session_scope(seeded.session_factory, None) as s:
            claim = attempt.claim(session=s, job_id=job_id, worker="w")
        assert claim is not None
        with session_scope(seeded.session_factory, None) as s:
            failed = attempt.fail_attempt(
                session=s,
                job_id=job_id,
                attempt=claim.attempt,
                reason=error,
                settings=settings,
                retryable=False,
            )
            assert failed is not None and failed.status.value == "failed"
    done = client.get(f"/v1/erasure-requests/{parent.json()['id']}", headers=headers).json()
    assert done["status"] == "failed"
    assert done["status_reason"].startswith("3 of 3 model(s) failed; 'digits-cnn': failed")
    assert len(done["status_reason"]) == 1024 and done["status_reason"].endswith("…")
    for child in done["children"]:
        assert child["status"] == "failed"
        assert child["status_reason"].startswith("failed after 1 job(s); last error: RuntimeError")
        assert len(child["status_reason"]) <= 1024
