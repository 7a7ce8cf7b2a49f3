"""Feature tables of the engine's cache, shared by every worker through the model store.

``StoreFeatureRemote(store)`` is the engine's ``FeatureRemote``: a table (one safetensors
file per backbone digest) is stored as a content-addressed blob, verified when read, and
``refs/features-<key>`` points at it. The upload writes the blob before the ref, so a reader
never finds a ref to a missing table; two workers warming the same key write the same ref.
"""

from __future__ import annotations

import os
from pathlib import Path

from models_store.store import ModelStore

__all__ = ["StoreFeatureRemote"]


class StoreFeatureRemote:
    def __init__(self, store: ModelStore) -> None:
        self.store = store

    @staticmethod
    def _ref(key: str) -> str:
        return f"features-{key}"

    def download(self, key: str, dest: Path) -> bool:
        digest = self.store.get_ref(self._ref(key))
        if digest is None:
            return False
        with open(dest, "wb") as out:
            for chunk in self.store.iter_blob(digest):  # verified before its first byte
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return True

    def upload(self, key: str, src: Path) -> None:
        with open(src, "rb") as f:
            digest = self.store.put_blob(f)
        self.store.put_ref(self._ref(key), digest)
