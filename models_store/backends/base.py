"""The interface a storage backend implements.

Backends are dumb byte stores with two namespaces, blobs and manifests, both keyed by
sha256 hex digests that the caller has already validated. Hashing, verification and
checkpoint logic live in :mod:`models_store.store`, once, for every backend.

Layout (relative to the store root or ``s3://bucket/prefix/``)::

    blobs/sha256/<first two hex chars>/<digest>
    manifests/<sha256>.json
    refs/<name>                 a small named pointer (e.g. a feature table's blob digest)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

__all__ = ["Backend", "Source", "blob_key", "manifest_key", "ref_key"]


class Source(Protocol):
    """What backends read uploads from: a readable, seekable binary file."""

    def read(self, size: int | None = -1, /) -> bytes: ...

    def seek(self, offset: int, whence: int = 0, /) -> int: ...

    def tell(self) -> int: ...

    def seekable(self) -> bool: ...


def is_digest(name: str) -> bool:
    """Whether a stored object's name is a sha256 digest (not a temporary file)."""
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


def blob_key(digest: str) -> str:
    return f"blobs/sha256/{digest[:2]}/{digest}"


def manifest_key(sha256: str) -> str:
    return f"manifests/{sha256}.json"


def ref_key(name: str) -> str:
    return f"refs/{name}"


class Backend(Protocol):
    @property
    def url(self) -> str:
        """Where the store lives, without credentials (for logs and errors)."""
        ...

    def ping(self) -> None:
        """Raise StoreError unless the store is reachable and usable."""
        ...

    def blob_size(self, digest: str) -> int:
        """Size of a stored blob; BlobNotFound when absent."""
        ...

    def has_blob(self, digest: str) -> bool: ...

    def read_blob(self, digest: str, start: int, end: int, chunk_size: int) -> Iterator[bytes]:
        """Bytes ``[start, end)`` of a blob, in chunks.

        Raises BlobNotFound when called (not lazily on first iteration) if absent; the
        caller has checked ``0 <= start <= end <= size``.
        """
        ...

    def stream_blob(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        """The whole blob as stored, whatever its length (for verification).

        Raises BlobNotFound when called if absent.
        """
        ...

    def write_blob(self, digest: str, source: Source) -> None:
        """Store ``source`` (read to its end) under ``digest``, atomically.

        The final key exists only once every byte is durably stored: a failure while
        reading ``source`` or while writing leaves nothing at the final key. Rewriting an
        existing blob writes identical bytes (content addressing), so it is harmless.
        """
        ...

    def has_manifest(self, sha256: str) -> bool: ...

    def read_manifest(self, sha256: str) -> bytes:
        """The stored manifest JSON; BlobNotFound when absent."""
        ...

    def write_manifest(self, sha256: str, data: bytes) -> None:
        """Store a manifest atomically (same guarantee as ``write_blob``)."""
        ...

    def write_record(self, key: str, data: bytes, *, retain_days: int = 0) -> bool:
        """Store ``data`` under ``records/<key>`` ONCE: False (nothing written) when the key
        exists. Filesystem: create-exclusive, then read-only; S3: a conditional put
        (``If-None-Match: *``), under Object Lock retention when ``retain_days`` > 0."""
        ...

    def read_record(self, key: str) -> bytes:
        """A stored record; BlobNotFound when absent."""
        ...

    def list_records(self, prefix: str) -> list[str]:
        """Keys of the records under ``records/<prefix>``, sorted."""
        ...

    def delete_blob(self, digest: str) -> None:
        """Remove a blob; nothing happens if it is absent."""
        ...

    def delete_manifest(self, sha256: str) -> None:
        """Remove a manifest; nothing happens if it is absent."""
        ...

    def blob_digests(self) -> Iterator[str]:
        """Every stored blob's digest (temporary files of writes under way excluded)."""
        ...

    def manifest_digests(self) -> Iterator[str]:
        """Every stored manifest's sha256."""
        ...

    def read_ref(self, name: str) -> bytes | None:
        """A named pointer's bytes, or None when absent (names are validated by the caller)."""
        ...

    def write_ref(self, name: str, data: bytes) -> None:
        """Store a named pointer atomically (a rewrite replaces it)."""
        ...

    def ref_names(self, prefix: str) -> list[str]:
        """Names of the refs starting with ``prefix``, sorted."""
        ...

    def delete_ref(self, name: str) -> None:
        """Remove a named pointer; nothing happens if it is absent."""
        ...
