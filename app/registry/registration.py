"""Registering a model from an upload, without torch in the API process: every
registration is a job (issue 12 point 4).

What the API can check without torch it checks in the request, and a failure is a 422
(409 for a taken name) that stores nothing: the name, the key's models, the npz or
manifest (readable, the arrays it needs, unique ids, integer labels, enough held-out
samples), labels against `num_classes`, and a safetensors checkpoint's header against the
architecture's published tensor spec (never unpickled). Then the upload is stored as a
blob, the training rows are inserted (so erasure requests by sample id or subject are
accepted and wait), and the model is answered 202 `validating` with its registration job
(`app.jobs.registration`): a worker loads the architecture, checks the checkpoint with
torch (a `.pt` state dict is read only there), reads the data, warms the feature cache,
measures version 1's metrics and publishes it (`ready`), or rejects the model with the
reason (`rejected`; nothing half-registered remains).

Training set, one of:
- `training_set`: an npz the engine's `npz` loader reads (`x, y, ids, x_val, y_val,
  ids_val`, optional test split and `subjects`). It is stored as a content-addressed blob
  (without `subjects`: their keyed hashes live in the database) and the dataset params reference
  its digest; workers materialise it under LETHE_DATA_DIR.
- `dataset` (a built-in dataset id) + `dataset_params` + `manifest`: an npz of `ids, y`
  (optional `subjects`) describing that dataset's training split (`lethe models register`
  computes it with the engine).
- a dataset by reference: `manifest` (CSV / JSON Lines) + `location` + `layout` +
  `preprocess` (`app.registry.by_reference`), whose files only a worker reads.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.auth.service import Client
from app.core.config import Settings
from app.core.errors import (
    Conflict,
    Forbidden,
    InvalidCheckpointFile,
    InvalidRegistration,
    Unprocessable,
)
from app.jobs import registration as registration_jobs
from app.registry import by_reference, service
from app.registry.models import VALIDATING, Model
from app.registry.training_set import MANIFEST_ARRAYS, TRAINING_SET_ARRAYS, read_npz, to_npz
from models_store import InvalidCheckpoint
from models_store.safetensors_format import parse_header, read_header_length

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._\-]{0,127}$")
_PART = r"(?:[A-Za-z_][A-Za-z0-9_]*|[0-9]+)"
HEAD_MODULE_PATTERN = rf"^{_PART}(?:\.{_PART}){{0,31}}$"
HEAD_MODULE = re.compile(HEAD_MODULE_PATTERN[1:-1])
"""A dotted module path (`fc`, `classifier.3`, `heads.head`): identifiers or indices."""


@dataclass
class Upload:
    name: str
    architecture: str
    checkpoint: IO[bytes]
    training_set: IO[bytes] | None = None
    dataset: str | None = None
    dataset_params: str | None = None
    manifest: IO[bytes] | None = None
    num_classes: int | None = None
    auto_promote: bool = True
    subject_identity_type: str = "user_id"
    location: str | None = None
    layout: str | None = None
    preprocess: str | None = None
    head_module: str | None = None
    """The logits layer of a `torchvision:` model, by its dotted module path; the worker
    checks it is an nn.Linear producing `num_classes` logits (found automatically if None).
    The router's form field has the same pattern, so the API document states it."""

    def __post_init__(self) -> None:
        if self.head_module is None:
            return
        if len(self.head_module) > 256 or not HEAD_MODULE.fullmatch(self.head_module):
            raise _invalid(
                "`head_module` is a dotted module path of the model, such as `fc` or "
                "`classifier.3` (identifiers or indices separated by `.`)",
                "head_module",
            )


ZIP_MAGIC = b"PK\x03\x04"
"""How a `torch.save` file starts (a zip archive since torch 1.6); a worker reads it with
`torch.load(weights_only=True)`. Anything else must be safetensors."""
TORCHVISION = "torchvision:"


def _format(f: IO[bytes]) -> str:
    f.seek(0)
    head = f.read(4)
    f.seek(0)
    return "pt" if head == ZIP_MAGIC else "safetensors"


def _invalid(
    detail: str, field: str, kind: type[Unprocessable] = InvalidRegistration
) -> Unprocessable:
    return kind(detail, errors=[{"pointer": f"/{field}", "detail": detail}])


def _header(f: IO[bytes]) -> Any:
    total = f.seek(0, 2)
    f.seek(0)
    try:
        n = read_header_length(f.read(16), total)
        f.seek(8)
        parsed = parse_header(f.read(n), total - 8 - n)
    except InvalidCheckpoint as exc:
        raise _invalid(str(exc), "checkpoint", InvalidCheckpointFile) from None
    f.seek(0)
    return parsed


def register(
    *, session: Session, store: Any, settings: Settings, client: Client, upload: Upload
) -> Model:
    """Check what the API can, store the upload, and answer the model `validating` with
    its registration job queued (dispatched after the caller's commit)."""
    if not NAME.match(upload.name):
        raise _invalid("model names are 1-128 letters, digits, `.`, `_`, `-`", "name")
    if not client.may_use_model(upload.name):
        raise Forbidden(f"this API key may not act on model {upload.name!r}")
    if session.scalar(select(Model.id).where(Model.name == upload.name)) is not None:
        raise Conflict(f"a model named {upload.name!r} already exists")
    return _accept(
        session=session,
        store=store,
        settings=settings,
        client=client,
        upload=upload,
        fmt=_format(upload.checkpoint),
    )


RESERVED_PARAMS = ("blob", "manifest", "path")
"""Dataset params Lethe sets itself (the stored npz or manifest, a worker's local file);
a built-in dataset's `dataset_params` may not name them."""


def _builtin_params(upload: Upload) -> dict[str, Any]:
    if upload.dataset in ("npz", by_reference.REFERENCE):
        raise _invalid(
            "upload an npz as `training_set`, a dataset by reference as `manifest` + "
            "`location`; `dataset` names a built-in dataset",
            "dataset",
        )
    try:
        given = json.loads(upload.dataset_params or "{}")
    except ValueError:
        given = None
    if not isinstance(given, dict):
        raise _invalid("`dataset_params` must be a JSON object", "dataset_params")
    reserved = sorted(set(given) & set(RESERVED_PARAMS))
    if reserved:
        raise _invalid(f"`dataset_params` may not set {reserved}", "dataset_params")
    return given


def _accept(
    *, session: Session, store: Any, settings: Settings, client: Client, upload: Upload, fmt: str
) -> Model:
    """Check, store the upload and the manifest; the model `validating` with its job."""
    spec: dict[str, Any] | None = None
    if not upload.architecture.startswith(TORCHVISION):
        spec = service.architecture_spec(session=session, arch_id=upload.architecture)
        if upload.head_module is not None:  # after the lookup: an unknown id says so first
            raise _invalid(
                "`head_module` applies to `torchvision:` architectures; the head of a "
                "built-in or plug-in architecture is its `head`",
                "head_module",
            )
    elif fmt == "safetensors":
        try:
            spec = service.architecture_spec(session=session, arch_id=upload.architecture)
        except Unprocessable:
            spec = None  # any torchvision builder: the worker builds and checks it
    secret = settings.secret_key.get_secret_value()
    identity = upload.subject_identity_type
    refs: list[str | None]
    # the stored copy: JSON Lines rows, or the npz without subjects; None for a built-in
    manifest_bytes: bytes | IO[bytes] | None
    if upload.location is not None:
        if upload.training_set is not None or upload.dataset is not None:
            raise _invalid(
                "a dataset by reference (`location`) takes a `manifest`, not `training_set` "
                "or `dataset`",
                "location",
            )
        if upload.manifest is None:
            raise _invalid(
                "a dataset by reference needs its `manifest` (CSV or JSON Lines: sample_id, "
                "label, split[, subject_ref, uri])",
                "manifest",
            )
        ref = by_reference.read_reference(
            manifest=upload.manifest.read(),
            location=upload.location,
            layout=upload.layout,
            preprocess=upload.preprocess,
            settings=settings,
            identity_type=identity,
        )
        train = [r for r in ref.rows if r["split"] == "train"]
        ids = [r["sample_id"] for r in train]
        labels = [int(r["label"]) for r in train]
        refs = [r["subject_ref"] for r in train]
        found_classes = ref.num_classes
        dataset_id = by_reference.REFERENCE
        params: dict[str, Any] = dict(ref.params)
        manifest_bytes = ref.jsonl()
    elif (upload.training_set is None) == (upload.dataset is None):
        raise _invalid(
            "give exactly one of `training_set` (npz), `dataset` (a built-in id, with its "
            "`manifest`) or `location` (a dataset by reference, with its `manifest`)",
            "training_set",
        )
    elif upload.training_set is not None:
        npz = read_npz(
            upload.training_set,
            field="training_set",
            required=TRAINING_SET_ARRAYS,
            secret=secret,
            identity_type=identity,
        )
        ids, labels = npz.ids, npz.labels
        refs = npz.subject_refs or [None] * len(ids)
        found_classes = npz.num_classes
        dataset_id, params = "npz", {}
        if "subjects" in npz.arrays:  # raw identities never reach the store
            manifest_bytes = to_npz({k: v for k, v in npz.arrays.items() if k != "subjects"})
        else:
            upload.training_set.seek(0)
            manifest_bytes = upload.training_set
    else:
        assert upload.dataset is not None
        params = _builtin_params(upload)
        if upload.manifest is None:
            raise _invalid(
                "a built-in `dataset` needs its `manifest` (npz of ids, y, optional subjects)",
                "manifest",
            )
        rows = read_npz(
            upload.manifest,
            field="manifest",
            required=MANIFEST_ARRAYS,
            secret=secret,
            identity_type=identity,
        )
        ids, labels = rows.ids, rows.labels
        refs = rows.subject_refs or [None] * len(ids)
        found_classes = rows.num_classes
        dataset_id, manifest_bytes = upload.dataset, None  # the rows live in the database
    num_classes = upload.num_classes or found_classes
    if found_classes > num_classes:
        raise _invalid(
            f"labels go up to {found_classes - 1} but num_classes is {num_classes}",
            "num_classes",
        )
    if fmt == "safetensors":
        parsed = _header(upload.checkpoint)  # a bad header is refused now, not by the job
        if spec is not None:
            service.check_checkpoint(
                parsed.tensors, spec, arch_id=upload.architecture, num_classes=num_classes
            )
    upload.checkpoint.seek(0)
    digest = store.put_blob(upload.checkpoint)
    # stored only once everything the API can check passed: a 422 leaves nothing behind
    if dataset_id == "npz":
        assert manifest_bytes is not None
        params.update(blob=store.put_blob(manifest_bytes), num_classes=num_classes)
    elif manifest_bytes is not None:
        params["manifest"] = store.put_blob(manifest_bytes)
    model = service.create_model(
        session=session,
        name=upload.name,
        architecture=upload.architecture,
        num_classes=num_classes,
        dataset_id=dataset_id,
        dataset_params=params,
        samples=(
            service.SampleRow(i, label, r) for i, label, r in zip(ids, labels, refs, strict=True)
        ),
        auto_promote=upload.auto_promote,
        subject_identity_type=identity if any(refs) else None,
        status=VALIDATING,
        registration={
            "upload": digest,
            "format": fmt,
            "actor": client.actor,
            **({"head_module": upload.head_module} if upload.head_module else {}),
        },
    )
    registration_jobs.queue(session=session, model=model, settings=settings, actor=client.actor)
    return model
