"""Training-set manifests from uploaded npz files, read with numpy (never unpickled).

A *training set* npz holds what the engine's `npz` loader needs: `x, y, ids` and the
held-out `x_val, y_val, ids_val` (optionally `x_test, y_test, ids_test`), plus an optional
`subjects` array (the data subject of each training sample). A *manifest* npz (for a
built-in dataset) holds only `ids, y` and optional `subjects`.

Raw subject identities never reach storage: the database keeps their keyed hashes and
the npz written to the store leaves the `subjects` array out.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from app.core.errors import InvalidTrainingSet, Unprocessable
from app.core.subjects import subject_ref
from app.core.text import UNSAFE_ID_CHARS, UNSAFE_ID_RULE

TRAINING_SET_ARRAYS = ("x", "y", "ids", "x_val", "y_val", "ids_val")
MIN_VAL_SAMPLES = 100
"""Fewest held-out samples a training set may bring; the engine's ``unlearning.MIN_VAL``
(the API never imports the engine). Sample-level forgetting calibrates to the held-out
confidences and the verification gate compares forget-set with held-out accuracy: with n
samples at ~90 % accuracy that accuracy's standard error is 30/sqrt(n) points, 3 at n = 100,
already the size of what is being measured."""


def held_out_shortfall(split: str, count: int) -> str | None:
    """Why a held-out split of ``count`` samples is too small to register with, or None."""
    if count >= MIN_VAL_SAMPLES:
        return None
    return (
        f"the held-out split ({split}) has {count} samples; at least {MIN_VAL_SAMPLES} are "
        f"needed to calibrate and verify sample-level erasure (the standard error of a "
        f"held-out accuracy over fewer samples exceeds 3 points)"
    )


MANIFEST_ARRAYS = ("ids", "y")


@dataclass
class Manifest:
    ids: list[str]
    labels: list[int]
    subject_refs: list[str | None] | None
    num_classes: int
    arrays: dict[str, Any]


def _fail(detail: str, field: str) -> Unprocessable:
    return InvalidTrainingSet(detail, errors=[{"pointer": f"/{field}", "detail": detail}])


def read_npz(
    source: IO[bytes],
    *,
    field: str,
    required: tuple[str, ...],
    secret: str,
    identity_type: str,
    max_ids_length: int = 256,
) -> Manifest:
    try:
        loaded = np.load(source, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise ValueError("a single .npy array, not an npz archive")
        with loaded as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise _fail(
            f"`{field}` is not a readable npz file without pickled objects ({exc})", field
        ) from None
    missing = [a for a in required if a not in arrays]
    if missing:
        raise _fail(f"`{field}` lacks the array(s) {missing}; it needs {list(required)}", field)
    ids_arr, y = arrays["ids"], arrays["y"]
    if ids_arr.ndim != 1 or y.ndim != 1 or len(ids_arr) != len(y):
        raise _fail("`ids` and `y` must be 1-d arrays of the same length", field)
    if "x" in arrays and len(arrays["x"]) != len(y):
        raise _fail("`x` must have one row per id", field)
    if not np.issubdtype(y.dtype, np.integer):
        raise _fail(f"`y` must hold integer class labels, not {y.dtype}", field)
    if len(y) == 0:
        raise _fail("the training set is empty", field)
    ids = ids_arr.astype(str).tolist()
    if len(set(ids)) != len(ids):
        raise _fail("sample ids must be unique", field)
    too_long = any(not i or len(i) > max_ids_length for i in ids)
    if too_long or UNSAFE_ID_CHARS.search("".join(ids)):
        raise _fail(f"sample ids must be 1-{max_ids_length} characters {UNSAFE_ID_RULE}", field)
    labels = y.astype(np.int64)
    if labels.min() < 0:
        raise _fail("class labels must be >= 0", field)
    top = int(labels.max())
    if "y_val" in arrays:
        yv = arrays["y_val"]
        if yv.ndim != 1 or len(yv) != len(arrays["ids_val"]) or len(yv) != len(arrays["x_val"]):
            raise _fail("`x_val`, `y_val`, `ids_val` must have the same length", field)
        short = held_out_shortfall("`x_val`, `y_val`, `ids_val`", len(yv))
        if short:
            raise _fail(short, field)
        if len(yv):
            top = max(top, int(yv.max()))
    refs: list[str | None] | None = None
    if "subjects" in arrays:
        subjects = arrays["subjects"].astype(str)
        if subjects.ndim != 1 or len(subjects) != len(ids):
            raise _fail("`subjects` must have one entry per id (empty string: none)", field)
        refs = [subject_ref(secret, identity_type, s) if s else None for s in subjects.tolist()]
    return Manifest(ids, labels.tolist(), refs, top + 1, arrays)


def to_npz(arrays: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()
