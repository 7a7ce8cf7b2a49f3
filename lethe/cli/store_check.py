"""`lethe store verify`: re-hash the blobs of every published version and report what is
missing or corrupt, so an operator learns of a damaged store before a download does.

Downloads already refuse to serve a corrupt blob (reads are verified); this walk finds
damage in versions nobody has downloaded yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import session_scope
from app.registry.models import Model, ModelVersion
from models_store import StoreError


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
