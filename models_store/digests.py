"""Digest validation and the streaming helpers shared by the store and its backends."""

from __future__ import annotations

import hashlib
import re
import threading
from typing import IO

from models_store.errors import InvalidDigest

__all__ = ["CHUNK_SIZE", "SliceReader", "check_digest", "sha256_hex"]

#: Size of the chunks the store reads, hashes and yields.
CHUNK_SIZE = 1024 * 1024

_DIGEST = re.compile(r"[0-9a-f]{64}")


def check_digest(digest: object) -> str:
    """Return ``digest`` if it is a 64-char lowercase hex sha256, else raise InvalidDigest.

    Every key that reaches a backend passes through here, so a key can never name a
    path outside the store (``../../etc/passwd``) or an unexpected S3 object.
    """
    if not isinstance(digest, str) or _DIGEST.fullmatch(digest) is None:
        raise InvalidDigest(f"not a sha256 digest (64 lowercase hex characters): {digest!r:.80}")
    return digest


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class SliceReader:
    """A read-only, seekable file object over ``[start, start + length)`` of ``source``.

    Reads are serialised by a lock shared by every slice of the same source and use an
    explicit seek each time, so slices of one file may be consumed by different threads
    (the S3 transfer manager reads from worker threads).
    """

    def __init__(
        self, source: IO[bytes], start: int, length: int, lock: threading.Lock | None = None
    ) -> None:
        self._source = source
        self._start = start
        self._length = length
        self._pos = 0
        self._lock = lock if lock is not None else threading.Lock()

    def read(self, size: int | None = -1) -> bytes:
        remaining = self._length - self._pos
        if size is None or size < 0 or size > remaining:
            size = remaining
        if size == 0:
            return b""
        with self._lock:
            self._source.seek(self._start + self._pos)
            data = self._source.read(size)
        self._pos += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            pos = offset
        elif whence == 1:
            pos = self._pos + offset
        elif whence == 2:
            pos = self._length + offset
        else:
            raise ValueError(f"invalid whence: {whence}")
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        """Leave the underlying file open: it belongs to the caller (boto3 closes uploads)."""
