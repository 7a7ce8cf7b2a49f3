"""Lethe's model store: versioned safetensors checkpoints as content-addressed blobs.

Imports neither torch nor numpy: the API process uses it to serve downloads.

    store = open_store("file:///var/lib/lethe/store")    # or a path, or s3://bucket/prefix
    put = store.put_checkpoint(open("model.safetensors", "rb"))
    put.manifest.sha256, put.new_bytes, put.total_bytes
    for chunk in store.open_checkpoint(store.get_manifest(sha256), start, end): ...

Layout on every backend::

    blobs/sha256/<ab>/<digest>       one tensor's raw bytes, keyed by their sha256
    manifests/<sha256>.json          one checkpoint, keyed by its assembled file's sha256

Guarantees:

- Only safetensors is accepted, validated by its header alone; nothing is unpickled.
- Writes are atomic (temp file + fsync + rename; S3 PutObject / completed multipart
  upload), blobs are written before the manifest that references them, and a rerun
  rewrites nothing (content addressing), so ``put_checkpoint`` is safe to retry.
- Tensors already stored are not written again: a version that changed only its head
  stores only the head (``PutResult.new_bytes``).
- The download is one canonical safetensors file (see ``safetensors_format``), the same
  bytes every time, whose sha256 is the manifest key.
- Reads through ``open_checkpoint`` / ``read_checkpoint`` / ``get_blob`` verify every
  blob before yielding any of its bytes; a corrupt blob raises ``CorruptBlob``.
"""

from models_store.digests import CHUNK_SIZE
from models_store.errors import (
    BlobNotFound,
    CorruptBlob,
    InvalidCheckpoint,
    InvalidDigest,
    StoreError,
)
from models_store.manifest import CheckpointManifest, PutResult, TensorEntry
from models_store.store import ModelStore, open_store

__all__ = [
    "CHUNK_SIZE",
    "BlobNotFound",
    "CheckpointManifest",
    "CorruptBlob",
    "InvalidCheckpoint",
    "InvalidDigest",
    "ModelStore",
    "PutResult",
    "StoreError",
    "TensorEntry",
    "open_store",
]
