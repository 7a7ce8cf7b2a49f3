"""Strict parsing and canonical writing of safetensors headers, by the header alone.

A safetensors file is ``u64 little-endian N`` + ``N bytes of JSON header`` + a data
section that the header's ``data_offsets`` must tile exactly (no holes, no overlaps,
nothing after the last tensor). Nothing here unpickles or loads tensor data.

The *canonical* form that the store assembles on download:

- tensors ordered by item size, largest first, then by name (Python code-point order),
  so every tensor starts at a multiple of its own item size (zero-copy friendly);
- header JSON with sorted keys, no spaces, ASCII only, ``__metadata__`` present only when
  non-empty, padded with spaces so the data section starts on an 8-byte boundary.

The same tensors and metadata therefore always assemble to the same bytes, whatever the
order or formatting of the file they came from.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models_store.errors import InvalidCheckpoint

__all__ = [
    "DTYPE_SIZES",
    "MAX_HEADER_BYTES",
    "HeaderTensor",
    "ParsedHeader",
    "canonical_order",
    "encode_header",
    "parse_header",
    "read_header_length",
]

#: Item size in bytes of every dtype the store accepts (the safetensors spec's fixed-width
#: dtypes). Sub-byte formats (F4, F6_*) are refused: their byte length is not shape x size.
DTYPE_SIZES: Mapping[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}

#: Same limit as the reference implementation.
MAX_HEADER_BYTES = 100_000_000

_METADATA = "__metadata__"
_TENSOR_FIELDS = frozenset({"dtype", "shape", "data_offsets"})
_NOT_SAFETENSORS = "not a safetensors file"


@dataclass(frozen=True, slots=True)
class HeaderTensor:
    """One tensor as described by a header: where its bytes are in the data section."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.begin


@dataclass(frozen=True, slots=True)
class ParsedHeader:
    metadata: Mapping[str, str]
    tensors: tuple[HeaderTensor, ...]  # in data-section order
    data_length: int  # bytes the data section must have


def _format_hint(prefix: bytes) -> str:
    if prefix[:1] == b"\x80" and prefix[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return (
            " (this looks like a pickle file, e.g. torch.save output; it was not loaded."
            " Convert it with safetensors.torch.save_file(model.state_dict(), path))"
        )
    if prefix[:4] == b"PK\x03\x04":
        return (
            " (this looks like a zip archive, e.g. torch.save output; it was not loaded."
            " Convert it with safetensors.torch.save_file(model.state_dict(), path))"
        )
    return ""


def read_header_length(prefix: bytes, total_size: int | None) -> int:
    """Validate the 8-byte header length; ``total_size`` is the file size when known."""
    if len(prefix) < 8:
        raise InvalidCheckpoint(
            f"{_NOT_SAFETENSORS}: the file is {len(prefix)} bytes, shorter than the"
            " 8-byte header length"
        )
    n = int.from_bytes(prefix[:8], "little")  # the header length: an unsigned 64-bit LE
    hint = _format_hint(prefix)
    if n < 2:
        raise InvalidCheckpoint(f"{_NOT_SAFETENSORS}: header length {n} is too small{hint}")
    if n > MAX_HEADER_BYTES:
        raise InvalidCheckpoint(
            f"{_NOT_SAFETENSORS}: header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit{hint}"
        )
    if total_size is not None and 8 + n > total_size:
        raise InvalidCheckpoint(
            f"{_NOT_SAFETENSORS}: header length {n} runs past the end of the file"
            f" ({total_size} bytes); the file is truncated or not safetensors{hint}"
        )
    return n


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise InvalidCheckpoint(f"invalid safetensors header: duplicate key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> None:
    raise InvalidCheckpoint(f"invalid safetensors header: {name} is not valid JSON")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _parse_tensor(name: str, info: object) -> HeaderTensor:
    where = f"invalid safetensors header: tensor {name!r}"
    if not isinstance(info, dict):
        raise InvalidCheckpoint(f"{where} is not an object")
    if set(info) != _TENSOR_FIELDS:
        missing = sorted(_TENSOR_FIELDS - set(info))
        extra = sorted(set(info) - _TENSOR_FIELDS)
        raise InvalidCheckpoint(
            f"{where} must have exactly dtype, shape and data_offsets"
            f" (missing {missing}, unexpected {extra})"
        )
    dtype = info["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise InvalidCheckpoint(
            f"{where} has unknown dtype {dtype!r}; supported: {', '.join(DTYPE_SIZES)}"
        )
    shape = info["shape"]
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise InvalidCheckpoint(f"{where} has an invalid shape {shape!r}")
    offsets = info["data_offsets"]
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1]
    ):
        raise InvalidCheckpoint(
            f"{where} has invalid data_offsets {offsets!r}; expected [begin, end] with"
            " 0 <= begin <= end"
        )
    begin, end = offsets
    expected = math.prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != expected:
        raise InvalidCheckpoint(
            f"{where}: data_offsets [{begin}, {end}] span {end - begin} bytes but"
            f" {dtype} {shape} needs {expected}"
        )
    return HeaderTensor(name=name, dtype=dtype, shape=tuple(shape), begin=begin, end=end)


def parse_header(raw: bytes, data_length: int | None) -> ParsedHeader:
    """Parse and strictly validate a JSON header.

    ``data_length`` is the size of the data section when the file size is known; the
    offsets must then tile it exactly. When unknown, the returned ``data_length`` is what
    the offsets require, and the caller must check the stream ends there.
    """
    if raw[:1] != b"{":
        raise InvalidCheckpoint(f"{_NOT_SAFETENSORS}: the header does not start with '{{'")
    try:
        text = raw.decode("utf-8")
        header = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except InvalidCheckpoint:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise InvalidCheckpoint(f"{_NOT_SAFETENSORS}: the header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise InvalidCheckpoint(f"{_NOT_SAFETENSORS}: the header is not a JSON object")

    metadata_obj = header.pop(_METADATA, {})
    if not isinstance(metadata_obj, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata_obj.items()
    ):
        raise InvalidCheckpoint(
            "invalid safetensors header: __metadata__ must map strings to strings"
        )

    tensors = sorted(
        (_parse_tensor(name, info) for name, info in header.items()),
        key=lambda t: (t.begin, t.end, t.name),
    )
    cursor = 0
    previous: HeaderTensor | None = None
    for tensor in tensors:
        if tensor.begin < cursor:
            assert previous is not None
            raise InvalidCheckpoint(
                f"invalid safetensors header: tensors {previous.name!r} and {tensor.name!r}"
                f" overlap (data_offsets [{previous.begin}, {previous.end}] and"
                f" [{tensor.begin}, {tensor.end}])"
            )
        if tensor.begin > cursor:
            raise InvalidCheckpoint(
                f"invalid safetensors header: no tensor covers data bytes [{cursor},"
                f" {tensor.begin}); the data section must have no holes"
            )
        cursor = tensor.end
        previous = tensor
    if data_length is not None:
        if data_length > cursor:
            raise InvalidCheckpoint(
                f"invalid safetensors file: {data_length - cursor} trailing bytes after the"
                f" last tensor (data section is {data_length} bytes, tensors end at {cursor})"
            )
        if data_length < cursor:
            raise InvalidCheckpoint(
                f"truncated safetensors file: tensors need {cursor} data bytes but the file"
                f" has {data_length}"
            )
    return ParsedHeader(metadata=dict(metadata_obj), tensors=tuple(tensors), data_length=cursor)


def canonical_order(tensors: Sequence[HeaderTensor]) -> list[HeaderTensor]:
    """Largest item size first, then name: every tensor stays aligned to its item size."""
    return sorted(tensors, key=lambda t: (-DTYPE_SIZES[t.dtype], t.name))


def encode_header(
    metadata: Mapping[str, str], tensors: Sequence[tuple[str, str, Sequence[int], int]]
) -> bytes:
    """The canonical header block (length prefix included) for tensors in file order.

    ``tensors`` are ``(name, dtype, shape, length)`` in the order their bytes follow.
    """
    header: dict[str, Any] = {}
    if metadata:
        header[_METADATA] = dict(metadata)
    offset = 0
    for name, dtype, shape, length in tensors:
        header[name] = {
            "data_offsets": [offset, offset + length],
            "dtype": dtype,
            "shape": list(shape),
        }
        offset += length
    body = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    raw = body.encode("ascii")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw
