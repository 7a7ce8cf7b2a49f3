"""Errors raised by the model store.

One hierarchy, so callers can catch what they can handle::

    StoreError                 the store is unreachable or misbehaved (HTTP 503)
    ├── BlobNotFound           no blob / manifest under that digest (404, or 500 if the
    │                          database says it should exist)
    ├── CorruptBlob            stored bytes no longer hash to their digest (500, alert)
    ├── InvalidCheckpoint      an uploaded file is not an acceptable safetensors file (422)
    └── InvalidDigest          a key is not a 64-character lowercase hex sha256 (also a
                               ValueError: it is a caller bug, never a storage fault)

Range arguments outside the object raise plain ``ValueError`` (HTTP 416).
"""

from __future__ import annotations

__all__ = ["BlobNotFound", "CorruptBlob", "InvalidCheckpoint", "InvalidDigest", "StoreError"]


class StoreError(Exception):
    """Base class of every model-store error."""


class BlobNotFound(StoreError):
    """No blob or manifest is stored under the requested digest."""


class CorruptBlob(StoreError):
    """Stored bytes do not hash to the digest they are stored under."""


class InvalidCheckpoint(StoreError):
    """The file offered to ``put_checkpoint`` was refused; the message says what to fix."""


class InvalidDigest(StoreError, ValueError):
    """A key is not a 64-character lowercase hexadecimal sha256 digest."""
