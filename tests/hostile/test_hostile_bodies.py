"""Hostile request bodies, ids and parameters: each is refused with a problem+json whose
`detail` (or `errors`) says what to fix, and nothing is stored (erasure_requests,
erasure_request_samples and the audit trail, sealed or pending, keep their row counts),
on SQLite and PostgreSQL.

What is refused, and why:
- more ids than `max_ids_per_request` (100,000 in one request): 422, "split the request";
- a `subject_request_id`, or a request/job id in the path, that is not a UUID: 422 with a
  pointer (OpenDSR paths answer 400 in the OpenDSR error shape, as that spec demands);
- a `submitted_time` that is not an RFC 3339 timestamp, or has no timezone: 422;
- sample ids with control characters (C0 such as NUL, newline, DEL; C1 such as NEL) or
  bidirectional embedding/override/isolate controls (U+202A-U+202E, U+2066-U+2069): 422,
  because they break logs, CSV exports and terminal output, or make an id display as
  another (app/core/text.py); ids over 256 characters: 422;
- a body that is not a JSON object, is not JSON, is sent as another content type, nests
  deeper than 64 levels, or repeats a key (parsers disagree on which copy wins): 422;
- text with NUL characters where no id validation applies (a model name, a reason), which
  PostgreSQL cannot store or compare: 422 `invalid-value` instead of a 500.

What is accepted as id text: any other unicode, emoji, zero-width joiner, and ids of
exactly 256 characters, matching what registration accepts for training ids. Such an id
is looked up like any other; one that is not in the training set is refused 422
`unknown-samples`, listed back in `unknown_sample_ids` as JSON text (escaped by the
client that renders it).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.support.requests import dispatched_job, erasure_body, submit, training_ids

TABLES = ("erasure_requests", "erasure_request_samples")
AUDIT = ("audit_events", "audit_pending")  # an event is in one or the other
JSON = {"Content-Type": "application/json"}
BAD_UUID = "5f7a2a4e-9c3b-4f0e-8a53-2f1c8d7b9e1"  # one hex digit short
SRID = '"pointer": "/body/subject_request_id", "detail": "Input should be a valid UUID'


def _counts(rt: Any) -> dict[str, int]:
    from app.core.db import Base, session_scope

    def count(name: str) -> int:
        return s.scalar(select(func.count()).select_from(Base.metadata.tables[name])) or 0

    with session_scope(rt.session_factory, None) as s:
        counts = {name: count(name) for name in TABLES}
        counts["audit events"] = sum(count(name) for name in AUDIT)
        return counts


def _body(**changes: Any) -> bytes:
    body = erasure_body(["digits-00001"])
    body.update(changes)
    return json.dumps(body).encode()


def _nested(depth: int) -> bytes:
    return _body(sample_ids=["x"]).replace(b'["x"]', b"[" * depth + b'"x"' + b"]" * depth)


# (name, method, path, raw body, content type, status, what the detail/errors must say)
CASES: list[tuple[str, str, str, bytes | None, str, int, str]] = [
    (
        "100k-ids",
        "POST",
        "/v1/erasure-requests",
        _body(sample_ids=[f"id-{i:06d}" for i in range(100_000)]),
        "application/json",
        422,
        "exceed the limit of 10000 per request; split the request",
    ),
    *[
        (f"srid-{i}", "POST", "/v1/erasure-requests", _body(subject_request_id=v), "", 422, SRID)
        for i, v in enumerate([BAD_UUID, "not-a-uuid", "../../etc/passwd", "5f7a2a4e\x00"])
    ],
    *[
        (f"time-{v[:16]}", "POST", "/v1/erasure-requests", _body(submitted_time=v), "", 422, w)
        for v, w in [
            ("yesterday", "/body/submitted_time"),
            ("2026-13-45T25:61:00Z", "/body/submitted_time"),
            ("2026-11-26T10:00:00", "timezone"),  # naive: whose 10:00?
            ("2026-11-26 10:00", "timezone"),
            ("", "/body/submitted_time"),
        ]
    ],
    *[
        (f"control-{i}", "POST", "/v1/erasure-requests", _body(sample_ids=[v]), "", 422, w)
        for i, (v, w) in enumerate(
            [
                ("digits-\x0000001", "without control"),
                ("digits-00001\n", "without control"),
                ("digits-\x7f", "without control"),
                ("digits-\u008500001", "without control"),  # C1 (NEL)
                ("\u202edigits-00001", "bidirectional-override"),  # right-to-left override
                ("digits-\u206600001", "bidirectional-override"),  # left-to-right isolate
                ("x" * 257, "1-256 characters"),
                ("", "1-256 characters"),
            ]
        )
    ],
    *[
        (f"not-object-{i}", "POST", "/v1/erasure-requests", raw, "", 422, "/body")
        for i, raw in enumerate([b"[]", b'"digits-00001"', b"42", b"null", b"{not json"])
    ],
    ("not-utf8", "POST", "/v1/erasure-requests", b'{"model": "\xff"}', "", 400, "UTF-8"),
    ("form", "POST", "/v1/erasure-requests", b"model=digits-cnn", "text/plain", 422, "/body"),
    (
        "urlencoded",
        "POST",
        "/v1/erasure-requests",
        b"model=digits-cnn",
        "application/x-www-form-urlencoded",
        422,
        "/body",
    ),
    ("nested-65", "POST", "/v1/erasure-requests", _nested(65), "", 422, "nested too deeply"),
    ("nested-100k", "POST", "/v1/erasure-requests", _nested(100_000), "", 422, "nested too deeply"),
    (
        "duplicate-key",
        "POST",
        "/v1/erasure-requests",
        _body()[:-1] + b', "model": "someone-elses-model"}',
        "",
        422,
        "repeats the key 'model'",
    ),
    *[
        (f"path-{m}-{p}", m, p.format(BAD_UUID), body, "", 422, "/path/")
        for m, p, body in [
            ("GET", "/v1/erasure-requests/{}", None),
            ("GET", "/v1/erasure-requests/{}/samples", None),
            ("DELETE", "/v1/erasure-requests/{}", None),
            ("POST", "/v1/erasure-requests/{}/extend", b'{"months": 1, "reason": "complex"}'),
            ("POST", "/v1/erasure-requests/{}/deny", b'{"ground": "legal_claims", "reason": "x"}'),
            ("GET", "/v1/jobs/{}", None),
        ]
    ],
    (
        "query-uuid",
        "GET",
        f"/v1/callbacks/deliveries?request_id={BAD_UUID}",
        None,
        "",
        422,
        "/query/request_id",
    ),
    (
        "path-version-overflow",
        "GET",
        "/v1/models/digits-cnn/versions/99999999999",
        None,
        "",
        422,
        "/path/number",
    ),
    ("audit-cursor", "GET", "/v1/audit?cursor=%C2%B2", None, "", 400, "cursor"),
]


@pytest.mark.parametrize(
    ("method", "path", "raw", "content_type", "status", "says"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_hostile_input_is_refused_with_a_problem_and_nothing_is_stored(
    api_client: Any,
    seeded: Any,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    raw: bytes | None,
    content_type: str,
    status: int,
    says: str,
) -> None:
    before = _counts(seeded)
    headers = {**admin_headers, "Content-Type": content_type or "application/json"}
    resp = api_client.request(method, path, content=raw, headers=headers)
    assert resp.status_code == status, resp.text[:500]
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.text[:500]
    problem = resp.json()
    assert problem["status"] == status and problem["detail"], problem
    said = problem["detail"] + json.dumps(problem.get("errors", []))
    assert says in said, problem
    assert _counts(seeded) == before
    assert api_client.dispatched == []


def test_bad_path_ids_on_opendsr_are_400_in_its_error_shape(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    before = _counts(seeded)
    for method in ("GET", "DELETE"):
        resp = api_client.request(method, f"/opendsr/v1/requests/{BAD_UUID}", headers=admin_headers)
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert "subject_request_id" in error["message"] and "UUID" in error["message"]
    assert _counts(seeded) == before


@pytest.mark.parametrize(
    "sample_id",
    [
        "digits-00001\N{PILE OF POO}",
        "digits\u200d00001",  # zero-width joiner
        "x" * 256,
    ],
    ids=["emoji", "zwj", "256-chars"],
)
def test_unicode_ids_are_looked_up_and_unknown_ones_listed(
    api_client: Any, seeded: Any, admin_headers: dict[str, str], sample_id: str
) -> None:
    known = training_ids(seeded, limit=1)
    before = _counts(seeded)
    resp = api_client.post(
        "/v1/erasure-requests", json=erasure_body([*known, sample_id]), headers=admin_headers
    )
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["type"].endswith("/unknown-samples")
    assert problem["unknown_sample_ids"] == [sample_id]
    assert "not in the training set" in problem["detail"]
    assert _counts(seeded) == before


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_nul_in_free_text_is_422_not_500_on_postgresql(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    """PostgreSQL cannot store or compare text with NUL; such values reach it only where no
    id validation applies (SQLite stores them, so this is PostgreSQL's case)."""
    created = submit(api_client, training_ids(seeded, limit=1), admin_headers)
    dispatched_job(api_client)  # its job (and the job's audit event) is made: nothing pending
    before = _counts(seeded)
    for method, path, body in [
        ("POST", "/v1/erasure-requests", erasure_body(["digits-00001"], model="digits\x00cnn")),
        ("POST", f"/v1/erasure-requests/{created['id']}/extend", {"months": 1, "reason": "a\x00"}),
        ("GET", "/v1/models/digits%00cnn", None),
        ("GET", "/v1/erasure-requests?model=digits%00cnn", None),
        ("GET", "/v1/audit?subject=a%00", None),
    ]:
        resp = api_client.request(method, path, json=body, headers=admin_headers)
        assert resp.status_code == 422, (path, resp.text)
        problem = resp.json()
        assert problem["type"].endswith("/invalid-value") and "NUL" in problem["detail"], problem
    assert _counts(seeded) == before
