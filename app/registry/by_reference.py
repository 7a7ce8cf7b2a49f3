"""A dataset by reference, as the API checks it (no torch): a manifest (CSV or JSON Lines)
plus a location where the data stays, its layout and its preprocessing.

- **manifest**: every row checked by `models_store.dataset_manifest.read_manifest`; problems
  are answered 422 by line (first 100). What is stored is a normalised JSON Lines copy in
  which each `subject_ref` is replaced by its keyed hash (the raw value never reaches the
  store or the database).
- **location**: `s3://bucket/prefix` (read with the configured S3 endpoint and credentials),
  or a folder that resolves (symlinks followed) under one of `LETHE_DATASET_ROOTS`; any
  other path is refused. The worker checks the folder again before reading it.
- **layout**: `image-folder`, `image-files` (a `uri` on every row) or `webdataset`.
- **preprocess**: a JSON object of `channels, resize, center_crop, mean, std`, or
  `{"preset": "<torchvision weights>"}` (the worker writes the preset out).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.core.errors import InvalidRegistration, InvalidTrainingSet, Unprocessable
from app.core.subjects import subject_ref
from app.core.text import UNSAFE_ID_CHARS, UNSAFE_ID_RULE
from app.registry.training_set import held_out_shortfall
from models_store.dataset_manifest import ManifestError, read_manifest

LAYOUTS = ("image-folder", "image-files", "webdataset")
PREPROCESS_FIELDS = {"channels", "resize", "center_crop", "mean", "std", "preset"}
REFERENCE = "reference"
"""`Model.dataset_id` of a dataset by reference."""


@dataclass
class Reference:
    rows: list[dict[str, Any]]
    """Normalised rows (subject refs hashed)."""
    num_classes: int
    params: dict[str, Any]
    """`Model.dataset_params` without the stored manifest's digest."""

    def jsonl(self) -> bytes:
        return b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in self.rows)


def _invalid(detail: str, field: str) -> Unprocessable:
    return InvalidRegistration(detail, errors=[{"pointer": f"/{field}", "detail": detail}])


def confine(location: str, settings: Settings) -> str:
    """The location as it is recorded: an `s3://` URL, or a resolved folder under one of the
    configured dataset roots. Raises ValueError saying why not."""
    location = location.strip()
    if location.startswith("s3://"):
        bucket, _, _prefix = location[5:].partition("/")
        if not bucket:
            raise ValueError("an S3 location is s3://bucket/prefix")
        if "/../" in f"/{_prefix}/" or "/./" in f"/{_prefix}/":
            raise ValueError("an S3 prefix may not contain `.` or `..` segments")
        return location
    if "://" in location:
        raise ValueError("a location is s3://bucket/prefix or a folder path")
    roots = settings.resolved_dataset_roots
    if not roots:
        raise ValueError(
            "folder locations are disabled on this deployment: its operator lists the folders "
            "datasets may live under in LETHE_DATASET_ROOTS (or use an s3:// prefix)"
        )
    path = Path(location)
    if not path.is_absolute():
        raise ValueError("a folder location must be an absolute path")
    resolved = path.resolve()
    if not any(resolved.is_relative_to(root) for root in roots):
        raise ValueError(
            f"{location!r} is not under a dataset root of this deployment "
            f"({', '.join(str(r) for r in roots)})"
        )
    return str(resolved)


def _preprocess(raw: str | None) -> dict[str, Any]:
    try:
        value = json.loads(raw) if raw else {}
    except ValueError:
        raise _invalid("`preprocess` must be a JSON object", "preprocess") from None
    if isinstance(value, str):  # a bare preset name
        value = {"preset": value}
    if not isinstance(value, dict):
        raise _invalid("`preprocess` must be a JSON object", "preprocess")
    unknown = sorted(set(value) - PREPROCESS_FIELDS)
    if unknown:
        raise _invalid(
            f"unknown preprocessing fields {unknown}; known: {sorted(PREPROCESS_FIELDS)}",
            "preprocess",
        )
    if "preset" in value and len(value) > 1:
        raise _invalid("give either a `preset` name or the fields, not both", "preprocess")
    return value


def read_reference(
    *,
    manifest: bytes,
    location: str,
    layout: str | None,
    preprocess: str | None,
    settings: Settings,
    identity_type: str,
) -> Reference:
    """Check a dataset by reference without reading its data; 422 with what to fix."""
    if layout not in LAYOUTS:
        raise _invalid(f"`layout` must be one of {list(LAYOUTS)}", "layout")
    try:
        where = confine(location, settings)
    except ValueError as exc:
        raise _invalid(str(exc), "location") from None
    recipe = _preprocess(preprocess)
    try:
        summary = read_manifest(manifest)
    except ManifestError as exc:
        raise InvalidTrainingSet(
            f"the manifest has {len(exc.problems)} problem(s) (first 100 listed): "
            + "; ".join(exc.problems[:5]),
            errors=[{"pointer": "/manifest", "detail": p} for p in exc.problems[:100]],
        ) from None
    except UnicodeDecodeError:
        raise InvalidTrainingSet(
            "the manifest is not UTF-8 text (CSV or JSON Lines)",
            errors=[{"pointer": "/manifest", "detail": "not UTF-8"}],
        ) from None
    problems = [
        f"sample_id {r['sample_id']!r}: longer than 256 characters or has characters "
        f"outside the rule ({UNSAFE_ID_RULE})"
        for r in summary.rows
        if len(r["sample_id"]) > 256 or UNSAFE_ID_CHARS.search(r["sample_id"])
    ]
    if layout == "image-files":
        problems += [f"sample_id {r['sample_id']!r}: no uri" for r in summary.rows if not r["uri"]]
    if summary.splits.get("train", 0) == 0:
        problems.append("the manifest has no train rows")
    short = held_out_shortfall("the manifest's val rows", summary.splits.get("val", 0))
    if short:
        problems.append(short)
    if problems:
        raise InvalidTrainingSet(
            f"the manifest has {len(problems)} problem(s): " + "; ".join(problems[:5]),
            errors=[{"pointer": "/manifest", "detail": p} for p in problems[:100]],
        )
    secret = settings.secret_key.get_secret_value()
    rows = [
        {
            **r,
            "subject_ref": subject_ref(secret, identity_type, r["subject_ref"])
            if r["subject_ref"]
            else None,
        }
        for r in summary.rows
    ]
    params = {"location": where, "layout": layout, "preprocess": recipe}
    return Reference(rows, summary.num_classes, params)
