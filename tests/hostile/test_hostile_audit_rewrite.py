"""A trail its keeper cannot rewrite: each rewrite the outside review did as the database
owner (truncate, recompute the hashes with the project's own `event_hash`, renumber, wipe
both tables) still passes the hash chain, and is reported by the signed checkpoint, both
the newest one in the store and the one an auditor kept. Inclusion proofs check offline.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import create_engine, text

from tests.support.audit import as_owner
from tests.support.requests import erasure_body, training_ids


def _events(client: Any, headers: dict[str, str], n: int, seeded: Any) -> None:
    for ids in [training_ids(seeded, limit=20)[i : i + 1] for i in range(n)]:
        assert (
            client.post("/v1/erasure-requests", json=erasure_body(ids), headers=headers).status_code
            == 202
        )


def _rows(conn: Any) -> list[Any]:
    return [
        SimpleNamespace(**r._asdict())
        for r in conn.execute(
            text(
                "SELECT seq, created_at, type, actor, subject, data, prev_hash, hash"
                " FROM audit_events ORDER BY seq"
            )
        )
    ]


def _rechain(conn: Any, rows: list[Any], start: int) -> None:
    """Rewrite rows from index `start` on with consistent seq/prev_hash/hash, as a database
    owner holding `event_hash` would."""
    from app.audit.service import GENESIS, event_hash
    from app.core.db import UTCDateTime

    prev = rows[start - 1].hash if start else GENESIS
    for i, r in enumerate(rows[start:], start=start):
        stamp = (
            datetime.fromisoformat(r.created_at) if isinstance(r.created_at, str) else r.created_at
        )
        created = UTCDateTime().process_result_value(stamp, None)
        data = r.data if isinstance(r.data, dict) else json.loads(r.data)
        seq = i + 1
        digest = event_hash(
            seq=seq,
            created_at=created,
            type=r.type,
            actor=r.actor,
            subject=r.subject,
            data=data,
            prev_hash=prev,
        )
        conn.execute(
            text(
                "INSERT INTO audit_events"
                " (seq, created_at, type, actor, subject, data, prev_hash, hash)"
                " VALUES (:seq, :c, :t, :a, :s, :d, :p, :h)"
            ),
            {
                "seq": seq,
                "c": r.created_at,
                "t": r.type,
                "a": r.actor,
                "s": r.subject,
                "d": json.dumps(data),
                "p": prev,
                "h": digest,
            },
        )
        prev = digest
    conn.execute(
        text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"), {"s": len(rows), "h": prev}
    )


def truncate(conn: Any) -> None:
    rows = _rows(conn)
    keep = rows[: len(rows) - 3]
    conn.execute(text("DELETE FROM audit_events WHERE seq > :n"), {"n": len(keep)})
    conn.execute(
        text("UPDATE audit_head SET seq = :s, hash = :h WHERE id = 1"),
        {"s": len(keep), "h": keep[-1].hash},
    )


def recompute(conn: Any) -> None:
    rows = _rows(conn)
    at = 2
    data = rows[at].data if isinstance(rows[at].data, dict) else json.loads(rows[at].data)
    changed = SimpleNamespace(**{**vars(rows[at]), "data": {**data, "rewritten": True}})
    rows = [*rows[:at], changed, *rows[at + 1 :]]
    conn.execute(text("DELETE FROM audit_events WHERE seq > :n"), {"n": at})
    _rechain(conn, rows, at)


def renumber(conn: Any) -> None:
    rows = _rows(conn)
    at = 3
    rows = [*rows[:at], *rows[at + 1 :]]  # drop one event, renumber those after it
    conn.execute(text("DELETE FROM audit_events WHERE seq > :n"), {"n": at})
    _rechain(conn, rows, at)


def wipe(conn: Any) -> None:
    conn.execute(text("DELETE FROM audit_events"))
    conn.execute(text("DELETE FROM audit_head"))


@pytest.mark.parametrize("rewrite", [truncate, recompute, renumber, wipe], ids=lambda f: f.__name__)
def test_every_rewrite_by_the_database_owner_is_reported(
    api_client: Any, seeded: Any, admin_headers: dict[str, str], rewrite: Any
) -> None:
    _events(api_client, admin_headers, 6, seeded)
    kept = api_client.get("/v1/audit/checkpoint", headers=admin_headers)
    assert kept.status_code == 200, kept.text
    checkpoint = kept.json()
    before = api_client.get("/v1/audit/verify", headers=admin_headers).json()
    assert before["ok"] and before["checkpoints_checked"] == 1
    assert api_client.post("/v1/audit/verify", json=checkpoint, headers=admin_headers).json()["ok"]

    engine = create_engine(seeded.settings.resolved_database_url)
    with engine.begin() as conn:
        as_owner(conn)
        rewrite(conn)
    engine.dispose()

    from app.audit import service
    from app.core.db import session_scope

    with session_scope(seeded.session_factory, None) as s:  # the chain alone is fooled
        assert service.verify(session=s).ok, "the rewrite should pass the hash chain alone"
    newest = api_client.get("/v1/audit/verify", headers=admin_headers).json()
    assert newest["ok"] is False and newest["checkpoint"]["size"] == checkpoint["size"]
    assert "checkpoint" in newest["reason"]
    supplied = api_client.post("/v1/audit/verify", json=checkpoint, headers=admin_headers).json()
    assert supplied["ok"] is False and supplied["checkpoints_checked"] >= 1
    # and no new checkpoint blesses the rewritten log
    _events(api_client, admin_headers, 1, seeded)
    again = api_client.get("/v1/audit/checkpoint", headers=admin_headers).json()
    assert again["size"] == checkpoint["size"] and again["root"] == checkpoint["root"]


def test_a_checkpoint_signed_by_another_key_is_refused(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    _events(api_client, admin_headers, 2, seeded)
    checkpoint = api_client.get("/v1/audit/checkpoint", headers=admin_headers).json()
    forged = {**checkpoint, "root": "00" * 32}
    resp = api_client.post("/v1/audit/verify", json=forged, headers=admin_headers).json()
    assert resp["ok"] is False and "signature" in resp["reason"]


def test_inclusion_proofs_check_offline(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    """With nothing but the proof, the checkpoint, the public key and RFC 9162's algorithm."""
    from app.audit import merkle

    _events(api_client, admin_headers, 5, seeded)
    checkpoint = api_client.get("/v1/audit/checkpoint", headers=admin_headers).json()
    pem = api_client.get("/v1/audit/public-key", headers=admin_headers).text
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, Ed25519PublicKey)
    signed = {k: v for k, v in checkpoint.items() if k != "signature"}
    key.verify(
        base64.b64decode(checkpoint["signature"]),
        json.dumps(signed, sort_keys=True, separators=(",", ":")).encode(),
    )  # raises InvalidSignature if not
    events = api_client.get("/v1/audit", params={"limit": 1000}, headers=admin_headers).json()[
        "items"
    ]
    for event in events[: checkpoint["size"]]:
        proof = api_client.get(
            f"/v1/audit/events/{event['seq']}/proof", headers=admin_headers
        ).json()
        assert proof["leaf"] == event["hash"]
        path = [bytes.fromhex(p) for p in proof["path"]]
        root = bytes.fromhex(checkpoint["root"])
        assert merkle.verify_inclusion(
            bytes.fromhex(event["hash"]), event["seq"] - 1, proof["size"], path, root
        )
        assert (
            not merkle.verify_inclusion(
                bytes.fromhex(event["hash"]),
                event["seq"] % proof["size"],
                proof["size"],
                path,
                root,
            )
            or proof["size"] == 1
        )
    # the checkpoint file is in the store, written once and read-only
    store_root = seeded.settings.data_dir / "store" / "records" / "audit" / "checkpoints"
    (written,) = [
        p for p in store_root.iterdir() if p.name.endswith(f"{checkpoint['size']:020d}.json")
    ]
    assert json.loads(written.read_bytes())["root"] == checkpoint["root"]
    assert not written.stat().st_mode & 0o222
    assert not seeded.store.put_record(f"audit/checkpoints/{checkpoint['size']:020d}.json", b"{}")
    assert json.loads(written.read_bytes())["root"] == checkpoint["root"]


def test_merkle_root_matches_rfc_9162_definition() -> None:
    from app.audit import merkle

    def mth(leaves: list[bytes]) -> bytes:  # the recursive definition, RFC 9162 §2.1.1
        if not leaves:
            return merkle.EMPTY_ROOT
        if len(leaves) == 1:
            return merkle.leaf_hash(leaves[0])
        k = 1 << ((len(leaves) - 1).bit_length() - 1)
        return merkle.node_hash(mth(leaves[:k]), mth(leaves[k:]))

    for n in range(0, 33):
        leaves = [bytes([i]) for i in range(n)]
        assert merkle.root(leaves) == mth(leaves)
        for i in range(n):
            proof = merkle.inclusion_proof(i, leaves)
            assert merkle.verify_inclusion(leaves[i], i, n, proof, mth(leaves))
            assert not merkle.verify_inclusion(leaves[i] + b"!", i, n, proof, mth(leaves))
