"""Checkpoint manifests: what a stored checkpoint is made of.

A manifest lists the tensors of one checkpoint by content digest, in canonical order,
with the sha256 and size of the canonical safetensors file they assemble into. It is
stored as compact JSON with sorted keys under ``manifests/<sha256>.json``::

    {"format": "lethe.safetensors-manifest/1", "metadata": {...}, "sha256": "...",
     "size": 1234, "tensors": [{"digest": "...", "dtype": "F32", "length": 64,
                                "name": "fc.weight", "shape": [4, 4]}, ...]}
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from models_store.digests import check_digest
from models_store.errors import CorruptBlob, InvalidDigest
from models_store.safetensors_format import DTYPE_SIZES, encode_header

__all__ = ["MANIFEST_FORMAT", "CheckpointManifest", "PutResult", "TensorEntry"]

MANIFEST_FORMAT = "lethe.safetensors-manifest/1"


@dataclass(frozen=True, slots=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    digest: str  # sha256 of the tensor's raw bytes: the blob key
    length: int


@dataclass(frozen=True, slots=True)
class CheckpointManifest:
    sha256: str  # of the assembled canonical safetensors file; the manifest's key
    size: int  # bytes of the assembled file
    metadata: Mapping[str, str]
    tensors: tuple[TensorEntry, ...]  # canonical order
    format: str = MANIFEST_FORMAT
    _header: bytes = field(default=b"", repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))
        object.__setattr__(self, "_header", build_header(self.metadata, self.tensors))

    def __hash__(self) -> int:
        return hash(self.sha256)

    @property
    def header(self) -> bytes:
        """The canonical header block (8-byte length + JSON) that starts the file."""
        return self._header

    @property
    def tensor_bytes(self) -> int:
        return sum(t.length for t in self.tensors)

    def segments(self) -> Iterator[tuple[int, TensorEntry]]:
        """``(offset in the assembled file, tensor)`` for every tensor, in file order."""
        offset = len(self._header)
        for tensor in self.tensors:
            yield offset, tensor
            offset += tensor.length

    def to_json(self) -> bytes:
        doc = {
            "format": self.format,
            "sha256": self.sha256,
            "size": self.size,
            "metadata": dict(self.metadata),
            "tensors": [
                {
                    "name": t.name,
                    "dtype": t.dtype,
                    "shape": list(t.shape),
                    "digest": t.digest,
                    "length": t.length,
                }
                for t in self.tensors
            ],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_json(cls, raw: bytes, *, expected_sha256: str | None = None) -> CheckpointManifest:
        """Parse a stored manifest; a malformed or inconsistent one is ``CorruptBlob``."""
        try:
            doc = json.loads(raw)
            manifest = cls(
                sha256=check_digest(doc["sha256"]),
                size=_int(doc["size"]),
                metadata=_str_map(doc["metadata"]),
                tensors=tuple(_entry(t) for t in doc["tensors"]),
                format=doc["format"],
            )
        except (ValueError, KeyError, TypeError, InvalidDigest) as exc:
            raise CorruptBlob(f"stored manifest is malformed: {exc}") from None
        if len({t.name for t in manifest.tensors}) != len(manifest.tensors):
            raise CorruptBlob(f"manifest {manifest.sha256} names a tensor twice")
        if manifest.format != MANIFEST_FORMAT:
            raise CorruptBlob(f"stored manifest has unknown format {manifest.format!r}")
        if expected_sha256 is not None and manifest.sha256 != expected_sha256:
            raise CorruptBlob(
                f"manifest stored under {expected_sha256} describes {manifest.sha256}"
            )
        if manifest.size != len(manifest.header) + manifest.tensor_bytes:
            raise CorruptBlob(f"manifest {manifest.sha256} has an inconsistent size")
        return manifest


@dataclass(frozen=True, slots=True)
class PutResult:
    manifest: CheckpointManifest
    new_bytes: int  # tensor bytes this put actually wrote (0 when everything was stored)
    total_bytes: int  # size of the assembled checkpoint


def build_header(metadata: Mapping[str, str], tensors: tuple[TensorEntry, ...]) -> bytes:
    return encode_header(metadata, [(t.name, t.dtype, t.shape, t.length) for t in tensors])


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"expected a non-negative integer, got {value!r}")
    return value


def _str_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError("metadata must map strings to strings")
    return value


def _entry(value: Any) -> TensorEntry:
    if not isinstance(value, dict):
        raise ValueError("tensor entry is not an object")
    dtype = value["dtype"]
    if dtype not in DTYPE_SIZES:
        raise ValueError(f"unknown dtype {dtype!r}")
    name = value["name"]
    if not isinstance(name, str):
        raise ValueError("tensor name is not a string")
    shape = tuple(_int(d) for d in value["shape"])
    length = _int(value["length"])
    itemsize = DTYPE_SIZES[dtype]
    count = 1
    for d in shape:
        count *= d
    if count * itemsize != length:
        raise ValueError(f"tensor {name!r} length does not match its shape")
    return TensorEntry(
        name=name, dtype=dtype, shape=shape, digest=check_digest(value["digest"]), length=length
    )
