"""The Python client and the `lethe requests|versions|models|audit` commands against the
running app (in process), and the audit chain verified and exported from the database."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from tests.support.requests import training_ids
from tests.support.service import create_key


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `lethe ...` against a given TestClient and settings."""
    from app.core import config
    from lethe.cli import client as client_cli
    from lethe.cli.main import app
    from lethe.client import LetheClient

    monkeypatch.setattr(LetheClient, "close", lambda self: None)  # the TestClient lives on

    def run(http: Any, settings: Any, *args: str, key: str = "", code: int = 0) -> Any:
        monkeypatch.setattr(client_cli, "make_http", lambda url: http)
        monkeypatch.setattr(config, "get_settings", lambda: settings)
        monkeypatch.setattr("lethe.cli.main.get_settings", lambda: settings)
        result = CliRunner().invoke(app, list(args), env={"LETHE_KEY": key})
        assert result.exit_code == code, result.output
        return result

    return run


def test_submit_wait_list_download(
    embedded_client: Any, seeded: Any, cli: Any, tmp_path: Path
) -> None:
    key = create_key(seeded, ["erasure:write", "erasure:read", "models:read"])
    ids = training_ids(seeded, limit=2)
    out = cli(
        embedded_client,
        seeded.settings,
        "requests",
        "submit",
        "--model",
        "digits-cnn",
        "--sample-id",
        ids[0],
        "--sample-id",
        ids[1],
        key=key,
    )
    req = json.loads(out.stdout)
    assert req["status"] in ("received", "queued", "running") and req["sample_count"] == 2
    waited = cli(
        embedded_client,
        seeded.settings,
        "requests",
        "wait",
        req["id"],
        "--interval",
        "0.2",
        key=key,
    )
    done = json.loads(waited.stdout)
    assert done["status"] == "completed" and done["result_version"] == 2
    # the progress bar ends at the job's last phase, 100 %, then says where to download
    # (`purged` once Lethe's own copies of the erased samples are gone, a moment later)
    assert re.search(r"completed: (published|purged)", waited.stderr), waited.stderr
    assert "100%" in waited.stderr
    assert "lethe versions download digits-cnn 2" in waited.stderr
    assert "/v1/models/digits-cnn/versions/2/checkpoint" in waited.stderr
    got = json.loads(
        cli(embedded_client, seeded.settings, "requests", "get", req["id"], key=key).stdout
    )
    assert got["id"] == req["id"]
    listed = cli(embedded_client, seeded.settings, "versions", "list", "digits-cnn", key=key).stdout
    versions = [json.loads(line) for line in listed.splitlines()]
    assert [v["number"] for v in versions] == [1, 2] and versions[1]["parent_number"] == 1
    dest = tmp_path / "v2.safetensors"
    shown = cli(
        embedded_client,
        seeded.settings,
        "versions",
        "download",
        "digits-cnn",
        "2",
        "-o",
        str(dest),
        key=key,
    )
    assert "verified" in shown.stdout
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == versions[1]["checkpoint_sha256"]


def test_download_refuses_a_wrong_checksum(
    api_client: Any, seeded: Any, cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lethe.client import LetheClient

    real = LetheClient.get_version
    monkeypatch.setattr(
        LetheClient,
        "get_version",
        lambda self, m, n: {**real(self, m, n), "checkpoint_sha256": "0" * 64},
    )
    key = create_key(seeded, ["models:read"])
    dest = tmp_path / "v1.safetensors"
    result = cli(
        api_client,
        seeded.settings,
        "versions",
        "download",
        "digits-cnn",
        "1",
        "-o",
        str(dest),
        "--no-progress",
        key=key,
        code=1,
    )
    assert "manifest says" in result.output
    assert not dest.exists() and not list(tmp_path.glob("*.part"))


def test_cancel_subjects_and_errors(api_client: Any, seeded: Any, cli: Any) -> None:
    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    key = create_key(seeded, ["erasure:write", "erasure:read"])
    subject = load_dataset(DEMO_DATASET, DEMO_PARAMS).train.subjects[0]
    req = json.loads(
        cli(
            api_client,
            seeded.settings,
            "requests",
            "submit",
            "--model",
            "digits-cnn",
            "--subject",
            f"user_id:{subject}",
            key=key,
        ).stdout
    )
    assert req["sample_count"] >= 1
    canceled = json.loads(
        cli(api_client, seeded.settings, "requests", "cancel", req["id"], key=key).stdout
    )
    assert canceled["status"] == "canceled"
    bad = cli(
        api_client,
        seeded.settings,
        "requests",
        "submit",
        "--model",
        "digits-cnn",
        "--sample-id",
        "nope",
        key=key,
        code=1,
    )
    assert "unknown-samples" in bad.output
    denied = cli(api_client, seeded.settings, "requests", "get", req["id"], key="", code=1)
    assert "unauthorized" in denied.output


def test_models_register_with_a_builtin_dataset(
    embedded_client: Any, seeded: Any, cli: Any, demo_artifacts: Any, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "w.safetensors"
    checkpoint.write_bytes(demo_artifacts.checkpoint)
    key = create_key(seeded, ["models:write", "models:read"])
    out = cli(
        embedded_client,
        seeded.settings,
        "models",
        "register",
        "--name",
        "digits-again",
        "--architecture",
        "digits-cnn",
        "--checkpoint",
        str(checkpoint),
        "--dataset",
        "sklearn-digits",
        "--dataset-params",
        '{"seed": 0}',
        "--no-auto-promote",
        "--interval",
        "0.2",
        key=key,
    )
    model = json.loads(out.stdout)  # printed once the registration job is done
    assert model["name"] == "digits-again" and model["auto_promote"] is False
    assert model["status"] == "ready" and model["latest_version"] == 1
    assert model["training_samples"] == len(training_ids(seeded))
    assert "registering digits-again" in out.stderr and "100%" in out.stderr
    assert "digits-again version 1 is ready" in out.stderr
    v1 = embedded_client.get(
        "/v1/models/digits-again/versions/1", headers={"X-API-Key": key}
    ).json()
    assert v1["metrics"]["TA"] > 80  # measured by the job: the demo checkpoint is trained


def test_client_retries_with_the_same_idempotency_key() -> None:
    from lethe.client import LetheClient

    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["idempotency-key"])
        if len(seen) == 1:
            return httpx.Response(503, json={"type": "x/service-unavailable"})
        if len(seen) == 2:
            return httpx.Response(
                409,
                json={"type": "https://lethe.dev/problems/idempotency-key-in-use"},
                headers={"content-type": "application/problem+json"},
            )
        return httpx.Response(202, json={"id": "r1", "status": "queued"})

    http = httpx.Client(base_url="http://lethe.test", transport=httpx.MockTransport(handler))
    client = LetheClient("http://lethe.test", "k", http=http, backoff_s=0)
    assert client.submit("m", sample_ids=["a"])["id"] == "r1"
    assert len(seen) == 3 and len(set(seen)) == 1


def test_audit_verify_export_and_tampering(
    api_client: Any, seeded: Any, cli: Any, tmp_path: Path
) -> None:
    from app.audit.service import GENESIS, event_hash
    from app.core.db import session_scope

    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    from tests.support.requests import erasure_body

    api_client.post(
        "/v1/erasure-requests", json=erasure_body(training_ids(seeded, limit=1)), headers=admin
    )
    ok = json.loads(cli(api_client, seeded.settings, "audit", "verify").stdout)
    assert ok["ok"] is True and ok["checked"] >= 3
    export = tmp_path / "audit.jsonl"
    cli(api_client, seeded.settings, "audit", "export", "-o", str(export))
    events = [json.loads(line) for line in export.read_text().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    prev = GENESIS
    from datetime import datetime

    for e in events:  # the export alone is enough to check the chain
        assert e["prev_hash"] == prev
        fields = {k: e[k] for k in ("seq", "type", "actor", "subject", "data", "prev_hash")}
        created = datetime.fromisoformat(e["created_at"].replace("Z", "+00:00"))
        assert event_hash(created_at=created, **fields) == e["hash"]
        prev = e["hash"]

    target = events[1]["seq"]
    postgres = seeded.settings.resolved_database_url.startswith("postgresql")
    with session_scope(seeded.session_factory, None) as s:
        if postgres:
            from sqlalchemy.exc import DBAPIError

            with pytest.raises(DBAPIError, match="append-only"), s.begin_nested():
                s.execute(
                    text("UPDATE audit_events SET actor = 'mallory' WHERE seq = :s"), {"s": target}
                )
            with pytest.raises(DBAPIError, match="append-only"), s.begin_nested():
                s.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": target})
            # a superuser can still switch the trigger off: verify is the second line
            s.execute(text("ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only"))
        s.execute(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = :s"), {"s": target})
    broken = json.loads(cli(api_client, seeded.settings, "audit", "verify", code=1).stdout)
    assert broken["ok"] is False and broken["first_broken_seq"] == target
    assert broken["reason"] == "content does not match its hash"
    verdict = api_client.get("/v1/audit/verify", headers=admin).json()
    assert verdict["first_broken_seq"] == target


def test_audit_verify_against_a_kept_checkpoint(
    api_client: Any, seeded: Any, cli: Any, tmp_path: Path
) -> None:
    """`lethe audit verify --checkpoint FILE`: a wiped log passes the chain, not the
    checkpoint an auditor kept (nor the newest one in the store)."""
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    from tests.support.requests import erasure_body

    for ids in (training_ids(seeded, limit=2)[:1], training_ids(seeded, limit=2)[1:]):
        api_client.post("/v1/erasure-requests", json=erasure_body(ids), headers=admin)
    kept = tmp_path / "checkpoint.json"
    kept.write_text(api_client.get("/v1/audit/checkpoint", headers=admin).text)
    pem = tmp_path / "audit-key.pem"
    pem.write_text(api_client.get("/v1/audit/public-key", headers=admin).text)
    args = ("audit", "verify", "--checkpoint", str(kept), "--public-key", str(pem))
    ok = json.loads(cli(api_client, seeded.settings, *args).stdout)
    assert ok["ok"] is True and ok["checkpoints_checked"] == 2

    from app.core.db import session_scope

    with session_scope(seeded.session_factory, None) as s:
        if seeded.settings.resolved_database_url.startswith("postgresql"):
            s.execute(text("SET session_replication_role = replica"))
        s.execute(text("DELETE FROM audit_events"))
        s.execute(text("DELETE FROM audit_head"))
    wiped = json.loads(cli(api_client, seeded.settings, *args, code=1).stdout)
    assert wiped["ok"] is False and "removed" in wiped["reason"]
    bad = tmp_path / "not-a-checkpoint.json"
    bad.write_text("{}")
    cli(api_client, seeded.settings, "audit", "verify", "--checkpoint", str(bad), code=2)
