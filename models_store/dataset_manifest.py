"""Training-set manifests by reference, read without torch (the API validates uploads).

One row per sample, CSV (with a header) or JSON Lines: ``sample_id`` (unique), ``label``
(integer >= 0), ``split`` (``train``, ``val`` or ``test``; default ``train``), and optionally
``subject_ref`` (pseudonymous) and ``uri`` (the sample's file relative to the location).
Problems are reported with their row number, at most ``limit`` of them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["COLUMNS", "ManifestError", "ManifestSummary", "read_manifest"]

COLUMNS = ("sample_id", "label", "split", "subject_ref", "uri")
SPLITS = ("train", "val", "test")


class ManifestError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems[:20]))


@dataclass
class ManifestSummary:
    rows: list[dict[str, Any]]
    splits: dict[str, int] = field(default_factory=dict)
    num_classes: int = 0


def _records(data: bytes, fmt: str) -> Iterator[tuple[int, Any]]:
    text = data.decode("utf-8-sig")
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(text))
        missing = {"sample_id", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ManifestError([f"the CSV header lacks {sorted(missing)}"])
        for n, row in enumerate(reader, start=2):
            yield n, row
        return
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield n, json.loads(line)
        except ValueError:
            yield n, None


def read_manifest(data: bytes, fmt: str | None = None, *, limit: int = 100) -> ManifestSummary:
    """Every row checked; ``ManifestError`` listing the first ``limit`` problems."""
    if fmt is None:
        fmt = "jsonl" if data.lstrip()[:1] == b"{" else "csv"
    if fmt not in ("csv", "jsonl"):
        raise ManifestError([f"unknown manifest format {fmt!r}: use csv or jsonl"])
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    seen: set[str] = set()
    splits = dict.fromkeys(SPLITS, 0)
    top = -1
    for n, rec in _records(data, fmt):
        if not isinstance(rec, dict):
            problems.append(f"line {n}: not a JSON object")
            continue
        sid = str(rec.get("sample_id") or "").strip()
        split = str(rec.get("split") or "train")
        label = rec.get("label")
        try:
            value = int(label)  # type: ignore[arg-type]
            ok = value >= 0 and str(label).strip() == str(value)
        except (TypeError, ValueError):
            value, ok = -1, False
        if not sid:
            problems.append(f"line {n}: sample_id is empty")
        elif sid in seen:
            problems.append(f"line {n}: sample_id {sid!r} appears twice")
        elif not ok:
            problems.append(f"line {n} ({sid}): label must be an integer >= 0")
        elif split not in SPLITS:
            problems.append(f"line {n} ({sid}): split must be one of {list(SPLITS)}")
        else:
            seen.add(sid)
            splits[split] += 1
            top = max(top, value)
            rows.append(
                {
                    "sample_id": sid,
                    "label": value,
                    "split": split,
                    "subject_ref": str(rec.get("subject_ref") or "") or None,
                    "uri": str(rec.get("uri") or "") or None,
                }
            )
        if len(problems) >= limit:
            break
    if not problems and not rows:
        problems.append("the manifest has no rows")
    if not problems and splits["val"] == 0:
        problems.append("the manifest has no val rows: Lethe needs held-out samples")
    if problems:
        raise ManifestError(problems)
    return ManifestSummary(rows, splits, top + 1)
