"""`lethe store verify`: re-hash the blobs of every published version and report what is
missing or corrupt, so an operator learns of a damaged store before a download does.
`lethe store gc`: delete the blobs nothing references (a put that crashed part-way).

Downloads already refuse to serve a corrupt blob (reads are verified); this walk finds
damage in versions nobody has downloaded yet. Versions whose blobs were deleted after
their retirement are not checked (they are listed as such).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import session_scope
from app.registry.models import Model, ModelVersion
from models_store import ModelStore, StoreError
from models_store.backends.base import is_digest
from models_store.store import Removal


@dataclass(frozen=True)
class VersionProblem:
    model: str
    version: int
    checkpoint_sha256: str
    problem: str


def check_versions(
    *, session_factory: sessionmaker[Session], store: Any
) -> tuple[int, list[VersionProblem]]:
    """Verify every version's manifest and blobs. Returns (versions checked, problems)."""
    with session_scope(session_factory, None) as s:
        rows = s.execute(
            select(Model.name, ModelVersion.number, ModelVersion.checkpoint_sha256)
            .join(Model, Model.id == ModelVersion.model_id)
            .where(ModelVersion.blobs_deleted_at.is_(None))
            .order_by(Model.name, ModelVersion.number)
        ).all()
    problems: list[VersionProblem] = []
    for name, number, sha in rows:
        try:
            found = store.verify(store.get_manifest(sha))
        except StoreError as exc:  # a missing manifest, or the store failed to read
            found = [f"cannot be checked: {exc.__class__.__name__}: {exc}"]
        problems += [VersionProblem(name, number, sha, p) for p in found]
    return len(rows), problems


def _digests(value: object) -> set[str]:
    """Every sha256-looking string inside a JSON value (a dataset's `blob`, or any other
    digest a registration records), so gc never deletes what a model's record points at."""
    if isinstance(value, str):
        return {value} if is_digest(value) else set()
    if isinstance(value, dict):
        return set().union(*(_digests(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_digests(v) for v in value))
    return set()


def collect_garbage(
    *, session_factory: sessionmaker[Session], store: ModelStore, dry_run: bool
) -> Removal:
    """Delete (or, on a dry run, list) the blobs no manifest and no model record references."""
    with session_scope(session_factory, None) as s:
        # a rejected registration's uploads are garbage; a validating one's are kept
        rows = s.execute(
            select(Model.dataset_params, Model.registration).where(Model.status != "rejected")
        ).all()
    keep = set().union(*(_digests(p) | _digests(r) for p, r in rows))
    return store.gc(keep_blobs=keep, dry_run=dry_run)
