"""Verify now and the export on the console's audit page.

Verify now answers at once from the newest signed checkpoint (signature and Merkle root
checked, the events after it recomputed) and starts the full walk in the background; each
says only what it checked: an old event's content edited without touching its hash passes
the quick check, which never claims to have recomputed it, and the full walk reports it.
A rewrite that recomputes the hashes fails the quick check. The export streams every
event, and a key limited to one model exports only that model's events.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import create_engine, text

from tests.support.audit import as_owner
from tests.support.requests import dispatched_job, erasure_body, training_ids
from tests.support.service import create_key
from tests.support.services import wait_until


def _signed_in(client: Any, key: str) -> str:
    form = client.get("/console/sign-in").text
    token = re.search(r'name="signin_token" value="([^"]+)"', form)
    assert token
    resp = client.post(
        "/console/sign-in",
        data={"api_key": key, "signin_token": token.group(1)},
        follow_redirects=False,
    )
    assert resp.status_code == 303, resp.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/console/audit").text)
    assert csrf
    return csrf.group(1)


def _submit(client: Any, seeded: Any, headers: dict[str, str], n: int) -> None:
    for i in range(n):
        ids = training_ids(seeded, limit=40)[i : i + 1]
        resp = client.post("/v1/erasure-requests", json=erasure_body(ids), headers=headers)
        assert resp.status_code == 202, resp.text


def _walk_done(client: Any) -> str:
    def done() -> str | None:
        page = client.get("/console/audit").text
        found = re.search(r'<p id="full-walk">(.*?)</p>', page, re.S)
        assert found
        words = re.sub(r"<[^>]+>", "", found.group(1)).split()
        return None if "running" in found.group(1) else " ".join(words)

    result: list[str] = []
    wait_until(lambda: bool(result.append(done() or "") or result[-1]), timeout=30, what="walk")
    return result[-1]


def _verify(client: Any, csrf: str) -> str:
    resp = client.post("/console/audit/verify", data={"csrf_token": csrf})
    assert resp.status_code == 200, resp.text
    found = re.search(r'id="verify-result">(.*?)</p>', resp.text, re.S)
    assert found
    return " ".join(found.group(1).split())


def test_verify_now_says_what_it_checked_and_the_full_walk_finds_an_edit(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    _submit(api_client, seeded, admin_headers, 4)
    signed = api_client.get("/v1/audit/checkpoint", headers=admin_headers).json()
    _submit(api_client, seeded, admin_headers, 2)  # events after the checkpoint
    csrf = _signed_in(api_client, create_key(seeded, ["admin"]))

    quick = _verify(api_client, csrf)
    assert quick.startswith("Quick check passed")
    assert f"events #1–#{signed['size']} have exactly the hashes signed" in quick
    head = api_client.get("/v1/audit/verify", headers=admin_headers).json()["head_seq"]
    assert f"{head - signed['size']} event(s) after it checked" in quick
    walk = _walk_done(api_client)
    assert "intact" in walk and f"checkpoint of {signed['size']} events" in walk

    # the database owner edits an old event's content, leaving its hash alone
    engine = create_engine(seeded.settings.resolved_database_url)
    with engine.begin() as conn:
        as_owner(conn)
        conn.execute(
            text("UPDATE audit_events SET actor = 'key:someone-else' WHERE seq = 2"),
        )
    quick = _verify(api_client, csrf)
    assert quick.startswith("Quick check passed")  # it never claims to recompute event 2
    assert "content recomputed" in quick and f"#1–#{signed['size']}" in quick
    walk = _walk_done(api_client)
    assert "BROKEN at event #2" in walk and "content does not match its hash" in walk

    # ... and one that recomputes the hash of the event is caught by the quick check
    from app.audit.service import event_hash

    with seeded.session_factory() as s:
        from app.audit.models import AuditEvent

        ev = s.get(AuditEvent, 2)
        assert ev is not None and ev.actor == "key:someone-else"
        digest = event_hash(
            seq=2,
            created_at=ev.created_at,
            type=ev.type,
            actor=ev.actor,
            subject=ev.subject,
            data=ev.data,
            prev_hash=ev.prev_hash,
        )
    with engine.begin() as conn:
        as_owner(conn)
        conn.execute(text("UPDATE audit_events SET hash = :h WHERE seq = 2"), {"h": digest})
    engine.dispose()
    quick = _verify(api_client, csrf)
    assert quick.startswith("Log BROKEN") and "do not hash to the root" in quick


def test_an_event_after_the_checkpoint_is_recomputed_by_the_quick_check(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    _submit(api_client, seeded, admin_headers, 2)
    signed = api_client.get("/v1/audit/checkpoint", headers=admin_headers).json()
    _submit(api_client, seeded, admin_headers, 1)
    csrf = _signed_in(api_client, create_key(seeded, ["audit:read"]))
    engine = create_engine(seeded.settings.resolved_database_url)
    with engine.begin() as conn:
        as_owner(conn)
        conn.execute(
            text("UPDATE audit_events SET actor = 'key:x' WHERE seq = :s"),
            {"s": signed["size"] + 1},
        )
    engine.dispose()
    quick = _verify(api_client, csrf)
    assert quick.startswith(f"Log BROKEN at event #{signed['size'] + 1}"), quick
    assert "content does not match its hash" in quick


def test_the_export_streams_every_event_and_only_the_keys_models(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    _submit(api_client, seeded, admin_headers, 3)
    dispatched_job(api_client)  # the scheduler's job.created is in: the chain stops growing
    api_client.post(
        "/v1/models/digits-cnn/webhooks",
        json={"url": "https://hooks.example.com/x", "events": ["version.published"]},
        headers=admin_headers,
    )
    create_key(seeded, ["admin"], name="unrelated")  # not about any model
    _signed_in(api_client, create_key(seeded, ["admin"]))
    lines = api_client.get("/console/audit/export.jsonl").text.splitlines()
    events = [json.loads(line) for line in lines]
    every = api_client.get("/v1/audit?limit=1000", headers=admin_headers).json()["items"]
    assert events == every  # the same fields and values as the API, in chain order
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))

    other = create_key(seeded, ["audit:read"], models=["other-model"])
    api_client.cookies.clear()
    _signed_in(api_client, other)
    assert api_client.get("/console/audit/export.jsonl").text == ""
    assert "digits-cnn" not in api_client.get("/console/audit").text
    mine = create_key(seeded, ["audit:read"], models=["digits-cnn"])
    api_client.cookies.clear()
    _signed_in(api_client, mine)
    exported = [
        json.loads(x) for x in api_client.get("/console/audit/export.jsonl").text.splitlines()
    ]
    subjects = {e["subject"] for e in exported}
    assert exported and all(s and not s.startswith("key:") for s in subjects)
    assert {e["type"] for e in exported} >= {"request.received"}
