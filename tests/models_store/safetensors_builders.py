"""Builders for safetensors test files (numpy is a test-only dependency)."""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np
from safetensors.numpy import save


def tiny_model(seed: int = 0, *, head_seed: int | None = None) -> dict[str, np.ndarray]:
    """A small classifier's state dict: a backbone and a head that can change alone."""
    rng = np.random.default_rng(seed)
    head_rng = np.random.default_rng(seed if head_seed is None else head_seed + 1000)
    return {
        "backbone.conv1.weight": rng.standard_normal((8, 1, 3, 3)).astype(np.float32),
        "backbone.conv1.bias": rng.standard_normal(8).astype(np.float32),
        "backbone.conv2.weight": rng.standard_normal((16, 8, 3, 3)).astype(np.float32),
        "backbone.bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "backbone.mask": rng.integers(0, 2, size=13).astype(np.uint8),
        "backbone.half": rng.standard_normal(5).astype(np.float16),
        "head.weight": head_rng.standard_normal((10, 16)).astype(np.float32),
        "head.bias": head_rng.standard_normal(10).astype(np.float32),
    }


METADATA = {"architecture": "digits-cnn", "format": "pt"}


def to_bytes(tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    return save(tensors, metadata=metadata)


_DTYPES = {"float32": "F32", "float16": "F16", "int64": "I64", "uint8": "U8", "int32": "I32"}


def hand_built(
    tensors: dict[str, np.ndarray],
    metadata: dict[str, str] | None = None,
    *,
    order: list[str] | None = None,
    indent: int | None = 2,
) -> bytes:
    """A valid but non-canonical file: given tensor order, indented JSON, odd padding."""
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = metadata
    data = b""
    for name in order or list(tensors):
        array = tensors[name]
        raw = array.tobytes()
        header[name] = {
            "dtype": _DTYPES[str(array.dtype)],
            "shape": list(array.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    body = json.dumps(header, indent=indent).encode() + b"   "
    return struct.pack("<Q", len(body)) + body + data


def raw_file(
    header: dict[str, Any] | bytes, data: bytes = b"", *, length: int | None = None
) -> bytes:
    """A file with an arbitrary (possibly invalid) header and data section."""
    body = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(body) if length is None else length) + body + data
