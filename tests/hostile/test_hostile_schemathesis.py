"""schemathesis against the app's own /openapi.json, on PostgreSQL, with a valid admin key.

Every operation is fuzzed in schemathesis's positive mode (data that fits the schema) and
negative mode (data that violates it), each twice when the path has parameters: once with
generated values (mostly unknown ids: the 404/422 paths) and once pinned to real ones
(`digits-cnn`, version 1, `production`, a stored request and its job), so the success
responses are checked against their schemas too. Nothing is excluded: the multipart model
upload gets generated form fields and bytes, which must be refused cleanly.

Checks, all on every case:
- `not_a_server_error`: no 5xx (an exception raised through the ASGI app counts too);
  the server errors are also counted, and the count must be 0;
- `status_code_conformance`, `content_type_conformance`, `response_schema_conformance`:
  the status is documented, the media type is the one documented for it, the body fits;
- `negative_data_rejection`: data that violates the schema is refused with a 4xx;
- `positive_data_acceptance`: data that fits the schema is not refused for its form. Every
  such refusal is counted ("valid data rejected"; it must be 0: the document expresses
  the formats the API enforces: cursors, Idempotency-Key, OpenDSR's request type,
  identities and extension, the one-of selector, sample ids, model names, callback URLs,
  checkpoints). Refusals for what a well-formed request *names* are counted apart by kind
  (`NOT_FORMAT`): a model or architecture that is not registered, sample ids the model
  was not trained on, a callback host that does not resolve here, an Idempotency-Key the
  generator reused with another body. No document can say which of those exist;
- `ignored_auth`: an operation that answered 2xx refuses the same call without the key;
- `unsupported_method`: a method the path does not document gets 405.
Left out: `max_response_time` (timings belong in BENCHMARKS.md, not in a CI assertion),
`response_headers_conformance` and `missing_required_header` (the one documented response
header is the registration's `Location`, checked in tests/core/test_openapi.py and the
registration tests; no header parameter is required), and the stateful
checks (`use_after_free`, `ensure_resource_availability`), which need link-driven
stateful runs.

Failures are collected per operation (first of each kind) and reported together, so one
run lists everything to fix. The number of generated cases is printed; BENCHMARKS.md
records it with the command (section "Hostile input (schemathesis)").
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from tests.support.requests import erasure_body, recording_app, training_ids
from tests.support.service import create_key, make_settings

pytestmark = pytest.mark.postgres

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
]
EXAMPLES = 15  # per operation, mode and path-parameter variant: ~1,500 cases, ~40 s on 2 cores
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    derandomize=True,  # the same cases on every CI run
    database=None,
    deadline=None,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
    suppress_health_check=list(hypothesis.HealthCheck),
)


@dataclass
class Target:
    app: Any
    headers: dict[str, str]
    real: dict[str, Any]


@pytest.fixture
def target(postgres_url: str, tmp_path: Path, demo_artifacts: Any) -> Iterator[Target]:
    """The API on PostgreSQL with the demo model, one stored request, and an admin key."""
    from lethe.demo import seed_demo
    from workers.runtime import build_runtime

    rt = build_runtime(make_settings(tmp_path, postgres_url))
    seed_demo(rt, artifacts=demo_artifacts)

    app, recorder = recording_app(rt)
    headers = {"Authorization": f"Bearer {create_key(rt, ['admin'])}"}
    with TestClient(app) as client:
        resp = client.post(
            "/v1/erasure-requests", json=erasure_body(training_ids(rt, limit=2)), headers=headers
        )
        assert resp.status_code == 202, resp.text
    # Leaving the client stopped the app's scheduler, which makes the pending job first.
    real = {
        "name": "digits-cnn",
        "number": 1,
        "alias": "production",
        "request_id": resp.json()["id"],
        "subject_request_id": resp.json()["subject_request_id"],
        "job_id": recorder.sent[0],
    }
    yield Target(app, headers, real)


def _summary(exc: BaseException) -> str:
    """The failure kinds and the response, without the (per-case) reproduction command."""
    text = str(exc)
    kinds = re.findall(r"- (ST\d+ [^\n]+)", text)
    return " + ".join(kinds) or f"{exc.__class__.__name__}: {text.splitlines()[0][:200]}"


# Well-formed requests the API refuses for what they refer to, not for their form: the
# document cannot say which names, ids, keys and hosts exist. Counted and printed apart.
NOT_FORMAT = {
    "idempotency-key-reused": "the generator reused an Idempotency-Key with another body",
    "callback-target-refused": "a generated callback host does not resolve here",
    "unknown-samples": "sample ids the model was not trained on",
    "wrong-identity-type": "an identity type the model's manifest does not hold",
    "opendsr:WrongIdentityType": "an identity type no registered model's manifest holds",
    "unknown-model": "a model name that is not registered",
    "unknown-architecture": "an architecture no worker published",
    "invalid-checkpoint": "uploaded bytes that are not a checkpoint",
    "invalid-training-set": "uploaded bytes that are not a training set",
    "checkpoint-mismatch": "a checkpoint that does not fit the architecture",
}


def _refusal_kind(response: Any) -> str:
    """The problem type of a refusal (OpenDSR's error reason on OpenDSR routes); an
    unknown model in a body is `unknown-model`."""
    try:
        body = response.json()
    except ValueError:
        return f"not JSON: {response.status_code}"
    if isinstance(body.get("error"), dict):  # OpenDSR's error shape
        errors = body["error"].get("errors", [])
        if any(e.get("message") == "/model: unknown model" for e in errors):
            return "unknown-model"
        reasons = {str(e.get("reason")) for e in errors}
        if reasons == {"CallbackTargetRefused"}:
            return "callback-target-refused"
        return f"opendsr:{','.join(sorted(reasons))}"
    for thing in ("model", "architecture"):
        if {"pointer": f"/{thing}", "detail": f"unknown {thing}"} in body.get("errors", []):
            return f"unknown-{thing}"
    return str(body.get("type", "")).rsplit("/", 1)[-1]


@dataclass
class Counts:
    cases: int = 0
    server_errors: int = 0
    valid_rejected: int = 0
    """Schema-valid requests refused for their form: what the document fails to say."""
    refused_for_reference: dict[str, int] = field(default_factory=dict)


def _fuzz(strategy: Any, headers: dict[str, str], found: dict[str, str], counts: Counts) -> None:
    """Run the checks on every case of `strategy`; record failures in `found` by kind and
    count the server errors and the schema-valid requests refused."""

    @hypothesis.given(case=strategy)
    @SETTINGS
    def run(case: Any) -> None:
        counts.cases += 1
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # raised through the ASGI app: a server error
            counts.server_errors += 1
            found.setdefault(f"server error: {exc.__class__.__name__}", str(exc)[:3000])
            return
        counts.server_errors += response.status_code >= 500
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except (Exception, BaseExceptionGroup) as exc:
            found.setdefault(_summary(exc), str(exc)[:3000])
        try:
            case.validate_response(response, checks=[positive_data_acceptance], headers=headers)
        except (Exception, BaseExceptionGroup):
            kind = _refusal_kind(response)
            if kind in NOT_FORMAT:
                counts.refused_for_reference[kind] = counts.refused_for_reference.get(kind, 0) + 1
                return
            counts.valid_rejected += 1
            found.setdefault(
                f"valid data rejected: {response.status_code} {kind}",
                f"{case.method} {case.formatted_path} {case.query} {case.body!r:.300}\n"
                f"{response.text[:500]}",
            )

    run()


def test_every_operation_survives_schemathesis(target: Target) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.app)
    failures: dict[str, dict[str, str]] = {}
    counts, operations = Counts(), 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        params = {p.name for p in operation.path_parameters}
        pinned = {k: v for k, v in target.real.items() if k in params}
        found = failures.setdefault(operation.label, {})
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in [None, pinned] if pinned else [None]:
                strategy = operation.as_strategy(mode, path_parameters=path_parameters)
                try:
                    _fuzz(strategy, target.headers, found, counts)
                except hypothesis.errors.Unsatisfiable:
                    # negative mode on an operation without parameters or body: no case exists
                    assert mode is GenerationMode.NEGATIVE and not params, operation.label

    print(
        f"\nschemathesis: {counts.cases} generated cases over {operations} operations, "
        f"{counts.server_errors} server errors, {counts.valid_rejected} valid data rejected; "
        f"well-formed but refused for what they name: {counts.refused_for_reference}"
    )
    report = [
        f"{label}: {key}\n{detail}"
        for label, found in failures.items()
        for key, detail in found.items()
    ]
    assert not report, "\n\n".join(report)
    assert counts.server_errors == 0 and counts.valid_rejected == 0, counts
    assert operations >= 30 and counts.cases >= 1000

    with TestClient(target.app) as client:
        chain = client.get("/v1/audit/verify", headers=target.headers)
    assert chain.status_code == 200 and chain.json()["ok"], chain.text
