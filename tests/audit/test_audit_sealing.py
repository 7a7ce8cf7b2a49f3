"""Audit events are stored with the change they record and sealed into the hash chain in
batches: a writer never waits for another, every committed event enters the chain exactly
once, an event of a rolled-back transaction never does, and the chain verifies."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.support.requests import erasure_body, training_ids
from tests.support.services import wait_until


def _sealed(rt: Any, subject: str) -> list[str]:
    from app.audit.models import AuditEvent
    from app.core.db import session_scope

    with session_scope(rt.session_factory, None) as s:
        return list(s.scalars(select(AuditEvent.type).where(AuditEvent.subject == subject)))


def test_the_running_service_seals_events_soon_after_the_commit(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    """Nobody reads the trail here: the process's sealer alone puts the event in the chain."""
    from app.audit import service as audit
    from app.core.db import session_scope

    body = erasure_body(training_ids(seeded, limit=2))
    resp = api_client.post("/v1/erasure-requests", json=body, headers=admin_headers)
    assert resp.status_code == 202, resp.text
    subject = f"request:{resp.json()['id']}"
    wait_until(lambda: _sealed(seeded, subject), timeout=5, what="the event to be sealed")
    assert _sealed(seeded, subject) == ["request.received"]

    def pending() -> int:
        with session_scope(seeded.session_factory, None) as s:
            return audit.pending_count(session=s)

    # the scheduler's job.created follows the submit's commit; it is sealed after its own
    wait_until(lambda: pending() == 0, timeout=5, what="every pending event to be sealed")
    metrics = api_client.get("/metrics").text
    assert "lethe_audit_pending_events 0.0" in metrics


@pytest.mark.postgres
def test_concurrent_writers_and_sealers_form_one_chain(postgres_url: str) -> None:
    from app.audit import service as audit
    from app.audit.models import AuditEvent
    from app.core.db import make_engine, make_session_factory

    factory = make_session_factory(make_engine(postgres_url))
    writers, transactions = 6, 20
    done = threading.Event()
    errors: list[BaseException] = []

    def write(w: int) -> None:
        try:
            for t in range(transactions):
                with factory() as s:
                    for e in range(2):
                        audit.append(session=s, type="test", actor=f"w{w}", subject=f"{w}:{t}:{e}")
                    if t % 5 == 4:
                        s.rollback()  # these two must never appear
                    else:
                        s.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def seal(wait: bool) -> None:
        try:
            while not done.is_set():
                with factory() as s:
                    audit.seal(session=s, wait=wait, batch=7)
                    s.commit()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    sealers = [threading.Thread(target=seal, args=(w,)) for w in (True, False, False)]
    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    for t in sealers + threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    for t in sealers:
        t.join()
    assert not errors, errors

    with factory() as s:
        verdict = audit.verify(session=s)
        s.commit()
        events = list(s.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
        assert s.scalar(select(func.count()).select_from(audit.AuditPending)) == 0
    assert verdict.ok, verdict
    committed = {
        f"{w}:{t}:{e}"
        for w in range(writers)
        for t in range(transactions)
        if t % 5 != 4
        for e in range(2)
    }
    subjects = [ev.subject for ev in events if ev.type == "test"]
    assert len(subjects) == len(set(subjects)), "an event was sealed twice"
    assert set(subjects) == committed, "lost or rolled-back events in the chain"
    assert [ev.seq for ev in events] == list(range(1, len(events) + 1))
    for w in range(writers):  # one writer's events keep their commit order
        mine = [tuple(map(int, s.split(":")[1:])) for s in subjects if s.startswith(f"{w}:")]
        assert mine == sorted(mine)


def test_a_tampered_event_is_found_after_sealing(db_url: str) -> None:
    """Sealed events are covered by the chain: editing one breaks verification there."""
    from sqlalchemy import text

    from app.audit import service as audit
    from app.core.db import make_engine, make_session_factory

    factory = make_session_factory(make_engine(db_url))
    with factory() as s:
        for i in range(3):
            audit.append(session=s, type="test", actor="a", subject=f"s{i}", data={"i": i})
        s.commit()
    with factory() as s:
        assert audit.seal(session=s) == 3
        s.commit()
        assert audit.verify(session=s).ok
    with factory() as s:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        s.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE subject = 's1'"))
        verdict = audit.verify(session=s)
        seq = s.scalar(text("SELECT seq FROM audit_events WHERE subject = 's1'"))
        s.rollback()
    assert not verdict.ok and verdict.first_broken_seq == seq
