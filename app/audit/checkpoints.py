"""Signed checkpoints of the audit log (the signed tree heads of RFC 9162 §4.10).

A checkpoint commits to the first `size` events of the chain: the Merkle root over their
chain hashes (`app.audit.merkle`), the chain hash of event `size`, and the time. It is
signed with an Ed25519 key that is NOT in the database (a PEM file under the data dir, or
`LETHE_AUDIT_SIGNING_KEY_PATH`), and written once to the model store under
`audit/checkpoints/<size>.json` (create-exclusive and read-only on a filesystem; a
conditional put, under S3 Object Lock retention when configured, on S3).

Whoever can rewrite the database cannot make a checkpoint for the rewritten log: they
do not hold the key. `verify_against` recomputes the root of the log's first `size`
events and compares: a truncated, renumbered, recomputed or wiped log no longer matches
any checkpoint signed before the rewrite. Checkpoints are handed out (`GET
/v1/audit/checkpoint`, the `/v1/audit/verify` answer) so auditors keep copies outside
Lethe's reach, and hand one back to verify against (`lethe audit verify --checkpoint`).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.audit import merkle
from app.audit import service as audit
from app.audit.models import AuditEvent
from app.core.after_commit import BackgroundLoop, Signal
from app.core.config import Settings
from app.core.db import session_scope

log = logging.getLogger("lethe.audit")
ORIGIN = "lethe-audit-log/v1"
PREFIX = "audit/checkpoints"


class SigningKey:
    """The Ed25519 key that signs checkpoints, loaded from (or created once at) `path`."""

    def __init__(self, path: Path):
        self.path = path
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process created it first
                pass
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(pem)
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(loaded, Ed25519PrivateKey):
            raise ValueError(f"{path} is not an Ed25519 private key")
        self._key = loaded
        self.public = loaded.public_key()

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def public_pem(key: Ed25519PublicKey) -> str:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def key_id(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _body_bytes(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Checkpoint:
    size: int
    root: str
    head_hash: str
    time: str
    key_id: str
    signature: str

    @property
    def body(self) -> dict[str, Any]:
        return {
            "origin": ORIGIN,
            "size": self.size,
            "root": self.root,
            "head_hash": self.head_hash,
            "time": self.time,
            "key_id": self.key_id,
        }

    def to_json(self) -> bytes:
        return json.dumps({**self.body, "signature": self.signature}, sort_keys=True).encode()

    @classmethod
    def parse(cls, data: bytes) -> Checkpoint:
        """A checkpoint from its JSON; ValueError saying what is wrong."""
        try:
            raw = json.loads(data)
            if raw.get("origin") != ORIGIN:
                raise ValueError(f"not a Lethe audit checkpoint (origin {raw.get('origin')!r})")
            return cls(
                size=int(raw["size"]),
                root=str(raw["root"]),
                head_hash=str(raw["head_hash"]),
                time=str(raw["time"]),
                key_id=str(raw["key_id"]),
                signature=str(raw["signature"]),
            )
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a Lethe audit checkpoint: {exc}") from exc

    def signed_by(self, key: Ed25519PublicKey) -> bool:
        try:
            key.verify(base64.b64decode(self.signature), _body_bytes(self.body))
        except (InvalidSignature, ValueError):
            return False
        return True


def leaves(session: Session, size: int | None = None) -> list[bytes]:
    """The chain hashes of events 1..size (all when None), in seq order. Only rows whose
    seq lies in 1..size are read, so a renumbered log yields other leaves."""
    q = select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq)
    if size is not None:
        q = q.where(AuditEvent.seq <= size)
    rows = session.execute(q).all()
    return [bytes.fromhex(h) if _hex(h) else h.encode() for _, h in rows]


_HEX64 = re.compile("[0-9a-f]{64}")


def _hex(value: str) -> bool:
    return _HEX64.fullmatch(value) is not None


def make(session: Session, key: SigningKey) -> Checkpoint | None:
    """A signed checkpoint of the whole sealed log (None when it is empty)."""
    rows = session.execute(select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq)).all()
    if not rows:
        return None
    if rows[-1][0] != len(rows):
        raise ValueError("the log's seq numbers are not 1..n: refusing to sign it")
    unsigned = Checkpoint(
        size=len(rows),
        root=merkle.root([bytes.fromhex(h) for _, h in rows]).hex(),
        head_hash=rows[-1][1],
        time=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        key_id=key_id(key.public),
        signature="",
    )
    signature = base64.b64encode(key.sign(_body_bytes(unsigned.body))).decode()
    return dataclasses.replace(unsigned, signature=signature)


def record_key(size: int) -> str:
    return f"{PREFIX}/{size:020d}.json"


def publish(store: Any, checkpoint: Checkpoint, *, retain_days: int = 0) -> bool:
    """Write the checkpoint once to the store; False when one of that size exists."""
    return bool(
        store.put_record(record_key(checkpoint.size), checkpoint.to_json(), retain_days=retain_days)
    )


def newest(store: Any) -> Checkpoint | None:
    keys = store.list_records(PREFIX)
    if not keys:
        return None
    return Checkpoint.parse(store.get_record(keys[-1]))


def reference(store: Any, seq: int | None = None) -> dict[str, Any]:
    """What callbacks and receipts hand out: the newest signed checkpoint of `store` (None
    before the first, or without a store) with where to fetch it again, the public key and
    inclusion proofs (of event `seq` when given and covered), for a receiver to keep and
    check offline."""
    cp = newest(store) if store is not None else None
    ref: dict[str, Any] = {"checkpoint": None, "public_key_url": "/v1/audit/public-key"}
    if cp is not None:
        ref["checkpoint"] = json.loads(cp.to_json())
        ref["checkpoint_url"] = f"/v1/audit/checkpoints/{cp.size}"
        if seq is None:
            ref["proof_url"] = f"/v1/audit/events/{{seq}}/proof?size={cp.size}"
        elif seq <= cp.size:
            ref["proof_url"] = f"/v1/audit/events/{seq}/proof?size={cp.size}"
    return ref


@dataclass(frozen=True)
class Finding:
    ok: bool
    reason: str | None = None


def verify_against(session: Session, checkpoint: Checkpoint, key: Ed25519PublicKey) -> Finding:
    """Whether the log still holds what `checkpoint` committed to."""
    if not checkpoint.signed_by(key):
        return Finding(False, "the checkpoint's signature does not verify with the audit key")
    have = leaves(session, checkpoint.size)
    if len(have) < checkpoint.size:
        return Finding(
            False,
            f"the log holds {len(have)} of the {checkpoint.size} events checkpoint "
            f"{checkpoint.time} signed: events were removed (truncated or wiped)",
        )
    if merkle.root(have).hex() != checkpoint.root:
        return Finding(
            False,
            f"the first {checkpoint.size} events do not hash to the root checkpoint "
            f"{checkpoint.time} signed: events were rewritten or renumbered",
        )
    return Finding(True)


_NEVER = Signal("audit_checkpoint_never")  # the checkpointer wakes on its interval only


def key_path(settings: Settings) -> Path:
    return settings.audit_signing_key_path or settings.data_dir / "audit" / "signing-key.pem"


def public_key(*, pem_file: Path | None, settings: Settings) -> Ed25519PublicKey:
    """The key checkpoints are checked with: a public key PEM an auditor holds, else that of
    the configured signing key (never created here). ValueError saying what is missing."""
    if pem_file is not None:
        loaded = serialization.load_pem_public_key(pem_file.read_bytes())
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError(f"{pem_file} is not an Ed25519 public key")
        return loaded
    path = key_path(settings)
    if not path.exists():
        raise ValueError(f"no audit signing key at {path}; pass the public key (--public-key)")
    return SigningKey(path).public


def signing_key(settings: Settings) -> SigningKey:
    return SigningKey(key_path(settings))


def checkpoint_now(
    session_factory: Any, store: Any, key: SigningKey, *, retain_days: int = 0
) -> Checkpoint | None:
    """Seal what is pending and publish a checkpoint if the log grew since the newest one;
    returns the checkpoint published (None when there was nothing new)."""
    with session_scope(session_factory, None) as session:
        audit.seal(session=session)
        latest = newest(store)
        head = session.scalar(select(func.max(AuditEvent.seq))) or 0
        if head == 0 or (latest is not None and latest.size >= head):
            return None
        if latest is not None:  # the log must extend what was signed, or nothing is signed
            finding = verify_against(session, latest, key.public)
            if not finding.ok:
                log.error(
                    "audit log no longer matches checkpoint %s: %s", latest.size, finding.reason
                )
                return None
        # the events it did not sign yet must extend the chain: links and content checked
        # from the newest checkpoint on (what came before is fixed by its signed root)
        after, prev = (latest.size, latest.head_hash) if latest else (0, audit.GENESIS)
        if not audit.check_chain(session=session, after=after, prev_hash=prev).ok:
            log.error("audit chain does not verify: no checkpoint is signed")
            return None
        made = make(session, key)
    if made is None or not publish(store, made, retain_days=retain_days):
        return None
    return made


def checkpointer(
    session_factory: Any, store: Any, settings: Settings, key: SigningKey
) -> BackgroundLoop:
    """The API process's thread that checkpoints the log every `audit_checkpoint_interval_s`."""

    def run(_: set[Any]) -> None:
        checkpoint_now(
            session_factory, store, key, retain_days=settings.audit_checkpoint_retain_days
        )

    return BackgroundLoop(
        "lethe-audit-checkpointer",
        _NEVER,
        run,
        settle_s=0,
        interval_s=settings.audit_checkpoint_interval_s,
    )


@dataclass(frozen=True)
class Proof:
    seq: int
    leaf: str
    size: int
    path: list[str]
    checkpoint: Checkpoint


def stored(store: Any, size: int) -> Checkpoint | None:
    """The checkpoint of `size` events in the store, None when there is none."""
    try:
        return Checkpoint.parse(store.get_record(record_key(size)))
    except Exception:
        return None


def proof(session: Session, store: Any, *, seq: int, size: int | None = None) -> Proof | None:
    """The inclusion proof of event `seq` in checkpoint `size` (the newest when None);
    None when there is no such checkpoint or it does not cover the event."""
    cp = newest(store) if size is None else stored(store, size)
    if cp is None or not 1 <= seq <= cp.size:
        return None
    have = leaves(session, cp.size)
    if len(have) < cp.size:
        return None
    path = merkle.inclusion_proof(seq - 1, have)
    return Proof(seq, have[seq - 1].hex(), cp.size, [p.hex() for p in path], cp)


@dataclass(frozen=True)
class LogVerification:
    """The chain's verdict (`service.verify`), then the checkpoints': the newest in the
    store and the one supplied (an auditor's copy), each checked against the log."""

    chain: audit.Verification
    newest: Checkpoint | None
    checked: int
    ok: bool
    reason: str | None


def verify_log(
    session: Session, store: Any, key: Ed25519PublicKey, supplied: Checkpoint | None = None
) -> LogVerification:
    chain = audit.verify(session=session)
    latest = newest(store)
    ok, reason, checked = chain.ok, chain.reason, 0
    for cp in (latest, supplied):
        if cp is None:
            continue
        finding = verify_against(session, cp, key)
        checked += 1
        if not finding.ok and ok:
            ok, reason = False, finding.reason
    return LogVerification(chain, latest, checked, ok, reason)
