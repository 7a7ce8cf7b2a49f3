"""Run a model's registration job (`app.jobs.registration`): the worker half of issue 12's
"registration is a job".

    claim ─► checking checkpoint: read the upload (safetensors, or a `.pt` state dict with
             torch.load(weights_only=True)), build the architecture, compare every tensor
        ─► opening data: the manifest, the location's listing (or shard headers)
        ─► reading data: ONE pass over every split; each manifest row's file is read and
             decoded once, and its penultimate activations go into the feature cache
             (shared through the store for a dataset by reference). A missing or
             undecodable file does not stop the pass: it is listed by sample id (first
             100, and the count), and the model is rejected at the end of the pass with
             nothing of it kept (no feature table written, here or in the store)
        ─► measuring: version 1's metrics from those activations
        ─► publishing: the checkpoint in the store's safetensors layout (the user's tensor
             names, shapes and dtypes), then ONE transaction: version 1, model `ready`

What the user can fix (not a state dict, a mismatched checkpoint, unreadable files, a
location outside the dataset roots, an unknown architecture or preset) rejects the model
at once with the reason; anything else is a transient failure, retried like every job,
and rejects the model when the attempts are spent. A rejected registration leaves no
version, no manifest rows, and its uploads are deleted from the store.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select

from app.core.db import session_scope
from app.jobs import attempt as jobs
from app.jobs import registration
from app.jobs.models import JobStatus
from app.registry.models import REJECTED, Model, TrainingSample
from app.registry.training_set import held_out_shortfall
from workers.datasets import REFERENCE, feature_cache
from workers.pipeline import Heartbeat, Progress, _finite, open_dataset, resolve_device
from workers.runtime import Runtime

log = logging.getLogger("lethe.registration")

PHASES = {
    "checking checkpoint": (0.0, 0.05),
    "opening data": (0.05, 0.1),
    "reading data": (0.1, 0.9),
    "measuring": (0.9, 0.95),
    "publishing": (0.95, 1.0),
}
MAX_LISTED = 100
"""Unreadable rows named in a rejection (and how many there were in all)."""


class Rejected(Exception):
    """What was registered cannot become a model; retrying will not help."""


class RegistrationProgress(Progress):
    def set(self, phase: str, inner: float = 0.0) -> None:
        start, end = PHASES.get(phase, (self.fraction, self.fraction))
        self.phase = phase
        self.fraction = max(self.fraction, start + (end - start) * min(max(inner, 0.0), 1.0))


def _checkpoint(claim: registration.RegistrationClaim, data: bytes) -> tuple[Any, Any]:
    """The model built with the upload's weights, and the upload's tensors."""
    import unlearning as ul
    from unlearning.checkpoint import (
        NotAStateDict,
        StateDictMismatch,
        check_state_dict,
        read_state_dict,
    )

    try:
        tensors = read_state_dict(data)
    except NotAStateDict as exc:
        raise Rejected(f"the checkpoint is not a state dict: {exc}") from None
    try:
        model = ul.get_architecture(
            claim.architecture, num_classes=claim.num_classes, head_module=claim.head_module
        )
    except (KeyError, ValueError, TypeError) as exc:
        named = f" with head_module {claim.head_module!r}" if claim.head_module else ""
        raise Rejected(
            f"architecture {claim.architecture!r}{named} cannot be built: {exc}"
        ) from None
    try:
        check_state_dict(model, tensors, claim.architecture)
    except StateDictMismatch as exc:
        raise Rejected(f"{exc} (with {claim.num_classes} classes)") from None
    model.load_state_dict(tensors, strict=True)
    return model.eval(), tensors


def _data(claim: registration.RegistrationClaim, rt: Runtime) -> Any:
    try:
        return open_dataset(rt, claim.dataset_id, claim.dataset_params, claim.num_classes)
    except (ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        raise Rejected(f"the dataset cannot be opened: {exc}") from None


def _matches_manifest(claim: registration.RegistrationClaim, rt: Runtime, ds: Any) -> None:
    """A built-in dataset is described by the manifest the user uploaded (`ids, y`): its
    rows must be that dataset's training split, id for id and label for label, or an
    erasure would later name samples the data does not hold (or the wrong ones)."""
    if claim.dataset_id in (REFERENCE, "npz"):  # the manifest rows were read from the data
        return
    with session_scope(rt.session_factory, None) as s:
        rows: dict[str, int] = {
            sid: label
            for sid, label in s.execute(
                select(TrainingSample.sample_id, TrainingSample.label).where(
                    TrainingSample.model_id == claim.model_id
                )
            )
        }
    held = dict(zip(map(str, ds.train.ids), (int(y) for y in ds.train.y.tolist()), strict=True))
    unknown = sorted(set(rows) - set(held))
    missing = sorted(set(held) - set(rows))
    relabelled = sorted(i for i in set(rows) & set(held) if rows[i] != held[i])
    faults = []
    for what, ids in (
        ("are not in its training split", unknown),
        ("of its training split are not in the manifest", missing),
        ("have another label in the manifest than in the data", relabelled),
    ):
        if ids:
            first = ", ".join(ids[:10])
            faults.append(f"{len(ids)} sample ids {what} (first {min(len(ids), 10)}: {first})")
    if faults:
        raise Rejected(
            f"the manifest does not describe dataset {claim.dataset_id!r} with these "
            f"dataset_params: " + "; ".join(faults)
        )


def _fits(claim: registration.RegistrationClaim, model: Any, ds: Any) -> None:
    """Inputs held in memory (npz, built-in datasets) go through the model once, two rows,
    before anything is cached: inputs of another shape reject the model with what they
    are, instead of failing every attempt with torch's message."""
    import torch

    if claim.dataset_id == REFERENCE:
        return  # image files (`x` would read them all): the reading pass checks each row
    x = ds.train.x
    if len(x) == 0:
        return
    try:
        with torch.no_grad():
            model(x[:2].to(next(model.parameters()).device))
    except (RuntimeError, ValueError) as exc:
        raise Rejected(
            f"the training inputs (each of shape {tuple(x.shape[1:])}) do not fit "
            f"architecture {claim.architecture!r}: {str(exc).splitlines()[0]}"
        ) from None


def _warm(
    claim: registration.RegistrationClaim,
    rt: Runtime,
    model: Any,
    ds: Any,
    device: Any,
    progress: Progress,
) -> Any:
    """The one pass over the data: every row read and decoded once, its activations cached;
    `Rejected` listing the unreadable rows (nothing of the pass kept) if there were any."""
    from unlearning.sources import RowProblems, UnreadableRows

    cache = feature_cache(rt, claim.dataset_id)
    problems = RowProblems(MAX_LISTED) if claim.dataset_id == REFERENCE else None
    try:
        cache.features(
            model,
            ds.train,
            ds.val,
            ds.test,
            device=device,
            progress=lambda f: progress.set("reading data", f),
            problems=problems,
        )
    except UnreadableRows as exc:
        raise Rejected(_unreadable(exc.problems, ds.params.get("location"))) from None
    return cache


def _unreadable(found: Any, location: object) -> str:
    """The rejection: how many rows, each distinct reason with its count, then the first
    100 sample ids with the kind of their problem (short, so that 100 fit in the model's
    `status_reason`; the reasons come first, so a cut of a long listing loses only ids)."""
    reasons = " | ".join(f"{why} ({n} rows)" for why, n in found.reasons.items())
    listed = "; ".join(f"{p.sample_id}: {p.reason.split(':', 1)[0]}" for p in found.listed)
    return (
        f"{found.count} of {found.checked} manifest rows have no readable file in {location}: "
        f"{reasons}. First {len(found.listed)}: {listed}"
    )


def _register(
    claim: registration.RegistrationClaim, rt: Runtime, progress: Progress
) -> dict[str, Any]:
    import unlearning as ul
    from unlearning.checkpoint import FORMAT, to_safetensors

    settings = rt.settings
    device = resolve_device(settings.device, settings.torch_threads)
    progress.set("checking checkpoint")
    data = rt.store.get_blob(claim.upload)
    model, tensors = _checkpoint(claim, data)
    progress.set("opening data")
    ds = _data(claim, rt)
    _matches_manifest(claim, rt, ds)
    # every path checked again on the data as opened: a built-in dataset's params (its
    # `val_frac`) set the held-out size only here
    short = held_out_shortfall(f"val of dataset {claim.dataset_id!r}", len(ds.val))
    if short:
        raise Rejected(short)
    _fits(claim, model, ds)
    progress.set("reading data")
    cache = _warm(claim, rt, model, ds, device, progress)
    progress.set("measuring")
    metrics: dict[str, Any] = dict(ul.evaluate(model, ds.unlearn_data([]), device, cache))
    metrics.update(
        {
            "scope": "registered",
            "train_count": len(ds.train),
            "val_count": len(ds.val),
            "test_count": len(ds.test),
            "device": str(device),
        }
    )
    progress.set("publishing")
    if claim.upload_format != "safetensors":  # the store keeps safetensors, the user's names
        meta = {
            "format": FORMAT,
            "arch_id": claim.architecture,
            "num_classes": str(claim.num_classes),
        }
        data = to_safetensors(tensors, meta)
    put = rt.store.put_checkpoint(data)
    return {
        "metrics": _finite(metrics),
        "checkpoint_sha256": put.manifest.sha256,
        "checkpoint_size": put.manifest.size,
        "stored_bytes": put.new_bytes,
    }


def _delete_uploads(rt: Runtime, model_id: int, digests: list[str]) -> None:
    """Delete upload blobs no other model (rejected ones aside) still records; what a
    failure here leaves behind, `lethe store gc` removes (it keeps only what live models
    record)."""
    backend = rt.store.backend
    for digest in _unused(rt, model_id, digests):
        try:
            if backend.has_blob(digest):
                backend.delete_blob(digest)
        except Exception:
            log.warning("could not delete upload blob %s", digest, exc_info=True)


def run_registration(job_id: str, rt: Runtime) -> str:
    """Run one registration job to its end: published, rejected, retrying, not-claimed or
    lost (another attempt owns the job now)."""
    with session_scope(rt.session_factory, rt.dispatcher) as s:
        claim = registration.claim(session=s, job_id=job_id, worker=rt.worker_name)
    if claim is None:
        return "not-claimed"
    log.info("registration of %s claimed (attempt %d)", claim.model_name, claim.attempt)
    progress = RegistrationProgress()
    try:
        with Heartbeat(rt, job_id, claim.attempt, progress) as hb:
            hb.beat()
            done = _register(claim, rt, progress)
    except Rejected as exc:
        log.warning("registration of %s rejected: %s", claim.model_name, exc)
        with session_scope(rt.session_factory, rt.dispatcher) as s:
            doomed = registration.reject_claimed(
                session=s,
                claim=claim,
                reason=str(exc),
                settings=rt.settings,
                worker=rt.worker_name,
            )
        if doomed is None:
            return "lost"
        _delete_uploads(rt, claim.model_id, doomed)
        return "rejected"
    except Exception as exc:
        if progress.lost.is_set():
            return "lost"
        log.exception("registration of %s attempt %d failed", claim.model_name, claim.attempt)
        with session_scope(rt.session_factory, rt.dispatcher) as s:
            job = jobs.fail_attempt(
                session=s,
                job_id=job_id,
                attempt=claim.attempt,
                reason=f"{exc.__class__.__name__}: {exc}",
                settings=rt.settings,
                actor=f"worker:{rt.worker_name}",
            )
            status = job.status if job is not None else None
        if status == JobStatus.failed:  # the last attempt: the model was rejected with it
            _delete_uploads(rt, claim.model_id, _uploads(rt, claim.model_id))
            return "rejected"
        return "retrying" if status == JobStatus.queued else "lost"
    with session_scope(rt.session_factory, rt.dispatcher) as s:
        version = registration.publish(
            session=s, claim=claim, settings=rt.settings, worker=rt.worker_name, **done
        )
    if version is None:
        return "lost"
    # the checkpoint now lives in the store's layout; the upload as sent is not kept
    _delete_uploads(rt, claim.model_id, [claim.upload])
    log.info("registration of %s published version 1", claim.model_name)
    return "published"


def _uploads(rt: Runtime, model_id: int) -> list[str]:
    with session_scope(rt.session_factory, None) as s:
        model = s.get(Model, model_id)
        assert model is not None
        found = (
            (model.registration or {}).get("upload"),
            model.dataset_params.get("manifest"),
            model.dataset_params.get("blob"),
        )
    return [str(d) for d in found if d]


def _recorded(value: object) -> set[str]:
    if isinstance(value, str):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_recorded(v) for v in value.values()))
    return set()


def _unused(rt: Runtime, model_id: int, digests: list[str]) -> list[str]:
    """The digests no other model that is not rejected records (two registrations may
    upload the same bytes)."""
    with session_scope(rt.session_factory, None) as s:
        rows = s.execute(
            select(Model.dataset_params, Model.registration).where(
                Model.id != model_id, Model.status != REJECTED
            )
        ).all()
    used = set().union(*(_recorded(p) | _recorded(r) for p, r in rows)) if rows else set()
    return [d for d in digests if d not in used]
