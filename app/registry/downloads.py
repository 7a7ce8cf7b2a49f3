"""Checkpoint downloads over HTTP: what GET and HEAD answer (ETag = sha256, one Range,
If-None-Match, Repr-Digest), computed from the version alone, before any byte is read."""

from __future__ import annotations

import base64
import re

from app.core.errors import RangeNotSatisfiable
from app.registry.models import Model, ModelVersion

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b` range as [start, end); None to serve the whole file."""
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if first:
        start = int(first)
        end = min(int(last) + 1, size) if last else size
    else:
        start, end = max(size - int(last), 0), size
    if start >= size or start >= end:
        raise RangeNotSatisfiable(
            f"range {header!r} is outside the checkpoint's {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


def checkpoint_headers(
    model: Model, v: ModelVersion, range_: str | None, if_none_match: str | None
) -> tuple[int, dict[str, str], tuple[int, int] | None]:
    """What GET and HEAD answer for a checkpoint: status, headers and the byte span."""
    etag = f'"{v.checkpoint_sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "X-Checkpoint-Sha256": v.checkpoint_sha256,
        "Content-Disposition": f'attachment; filename="{model.name}-v{v.number}.safetensors"',
        "Content-Type": "application/octet-stream",
    }
    if if_none_match and (
        if_none_match.strip() == "*"
        or etag in [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    ):
        del headers["Content-Type"]
        return 304, headers, None
    span = parse_range(range_, v.checkpoint_size) if range_ else None
    if span is None:
        digest = base64.b64encode(bytes.fromhex(v.checkpoint_sha256)).decode()
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
        headers["Content-Length"] = str(v.checkpoint_size)
        return 200, headers, None
    start, end = span
    headers["Content-Range"] = f"bytes {start}-{end - 1}/{v.checkpoint_size}"
    headers["Content-Length"] = str(end - start)
    return 206, headers, span
