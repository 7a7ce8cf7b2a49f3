"""Turn a claimed job into a published version. The Celery task and the embedded worker
both call `run_job`; this is the only place that joins the database, the store and the
engine.

    claim (conditional UPDATE) ─► load base checkpoint + training set ─► unlearn
        ─► verify (metrics + policy gate) ─► write checkpoint blobs (content-addressed)
        ─► ONE transaction: version, requests completed, samples erased, alias, audit

Failures before the last step leave nothing published; the job is retried or failed with
a readable reason (see app.jobs.attempt.fail_attempt).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.config import Settings
from app.core.db import session_scope
from app.jobs import attempt as jobs
from app.jobs import flows
from workers.datasets import REFERENCE, feature_cache, materialize, open_reference
from workers.runtime import Runtime

log = logging.getLogger("lethe.pipeline")

# Share of the job's progress bar each phase spans: (start, end) in [0, 1].
PHASES = {
    "loading": (0.0, 0.1),
    "unlearning": (0.1, 0.8),
    "verifying": (0.8, 0.95),
    "publishing": (0.95, 1.0),
}


class PolicyRefused(Exception):
    """The verification gate refused the result; retrying the same method will not help."""


@dataclass
class Progress:
    """Where the job is; written to the job row by the heartbeat thread."""

    phase: str = "starting"
    fraction: float = 0.0
    lost: threading.Event = field(default_factory=threading.Event)

    def set(self, phase: str, inner: float = 0.0) -> None:
        start, end = PHASES.get(phase, (self.fraction, self.fraction))
        self.phase = phase
        self.fraction = max(self.fraction, start + (end - start) * min(max(inner, 0.0), 1.0))


class Heartbeat:
    """Writes liveness and progress every interval; notices when the job was taken away."""

    def __init__(self, rt: Runtime, job_id: str, attempt: int, progress: Progress):
        self.rt, self.job_id, self.attempt, self.progress = rt, job_id, attempt, progress
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{job_id[:8]}", daemon=True
        )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def beat(self) -> None:
        try:
            with session_scope(self.rt.session_factory, None) as s:
                owned = jobs.heartbeat(
                    session=s,
                    job_id=self.job_id,
                    attempt=self.attempt,
                    phase=self.progress.phase,
                    progress=self.progress.fraction,
                )
            if not owned:
                self.progress.lost.set()
        except Exception:
            log.warning("heartbeat for job %s failed; will retry", self.job_id, exc_info=True)

    def _run(self) -> None:
        interval = self.rt.settings.heartbeat_interval_s
        while not self._stop.wait(interval):
            self.beat()


def resolve_device(name: str, threads: int = 0) -> Any:
    """The job's torch device; with `threads`, torch and the BLAS / OpenMP pools of numpy
    and scipy (the verification's probe and MIA fits, `unlearning.metrics`) use that many
    CPU threads. Left at their default, those pools start one spinning thread per core for
    fits that take milliseconds, and on a machine whose cores are busy they waited on each
    other: a 1,257-sample probe fit took ~1 s instead of ~0.05 s (issue 14's 6.6 s child)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
        _limit_threadpools(threads)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _limit_threadpools(threads: int) -> None:
    from threadpoolctl import threadpool_limits

    # kept, not undone: BLAS's limit is process-wide, OpenMP's holds for this thread (the
    # one that runs jobs), as torch.set_num_threads does
    threadpool_limits(limits=threads)


@functools.lru_cache(maxsize=4)
def _dataset(dataset_id: str, params_json: str) -> Any:
    import unlearning as ul

    return ul.load_dataset(dataset_id, **json.loads(params_json))


def load_dataset(dataset_id: str, params: dict[str, Any]) -> Any:
    """Built-in datasets are deterministic, so one process builds each only once."""
    return _dataset(dataset_id, json.dumps(params, sort_keys=True))


def open_dataset(rt: Runtime, dataset_id: str, params: dict[str, Any], num_classes: int) -> Any:
    """A model's training data: a dataset by reference, or a built-in / uploaded one."""
    if dataset_id == REFERENCE:
        return open_reference(rt, params, num_classes)
    return load_dataset(dataset_id, materialize(rt, params))


def gate(
    metrics: dict[str, Any], base_metrics: dict[str, Any], scope: str, settings: Settings
) -> str | None:
    """The verification policy: None if the result may be published, else the reason."""
    if scope in ("class", "mixed"):
        ua = metrics.get("class_UA", metrics.get("UA"))
        if ua is not None and ua < settings.policy_min_class_ua:
            return (
                f"forgotten class still recognised: UA {ua:.2f} < required "
                f"{settings.policy_min_class_ua:.2f}"
            )
    if scope in ("sample", "mixed"):
        import unlearning as ul

        part, parent = metrics, base_metrics
        count = int(metrics.get("forget_count") or 0)
        if scope == "mixed" and metrics.get("sample_UA") is not None:
            # the single samples judged on their own: the class part's UA (~100) would
            # hide a sample part the result left as the parent had it
            part = {"UA": metrics["sample_UA"]}
            parent = {"UA": base_metrics.get("sample_UA"), "VA": base_metrics.get("VA")}
            count = int(metrics.get("sample_forget_count") or 0)
        why = ul.check_forgetting(
            part, parent, forget_count=count, val_count=int(metrics.get("val_count") or 0)
        )
        if why is not None:
            return why
    ta, base_ta = metrics.get("TA"), base_metrics.get("TA")
    if ta is not None and base_ta is not None and base_ta - ta > settings.policy_max_ta_drop:
        return (
            f"test accuracy dropped {base_ta - ta:.2f} points (from {base_ta:.2f} to "
            f"{ta:.2f}); the limit is {settings.policy_max_ta_drop:.2f}"
        )
    return None


def _finite(metrics: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe metrics: NaN and infinities (undefined on empty sets) become None."""
    out: dict[str, Any] = {}
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        elif isinstance(value, dict):
            value = _finite(value)
        out[key] = value
    return out


def incremental_data(ds: Any, *, erased_before: Sequence[str], new: Sequence[str]) -> Any:
    """What a job forgets: only the samples no earlier version erased (`new`), on top of
    the base version, which already forgot the earlier ones (`erased_before`). Those are in
    neither set: left out of retain (never learned again) and out of forget (the base,
    which is also the distillation teacher, has forgotten them), so a job never needs their
    data, which the purge (`workers.purge`) has deleted by then. A class an earlier version
    erased whole stays out of the held-out metrics, as it did for that version."""
    import dataclasses

    import torch

    earlier = set(erased_before)
    if earlier:
        keep = torch.tensor([i not in earlier for i in ds.train.ids], dtype=torch.bool)
        if not bool(keep.all()):  # a built-in dataset, or an upload not purged yet
            ds = dataclasses.replace(ds, train=ds.train.subset(keep))
    data = ds.unlearn_data(new)
    if not earlier:
        return data
    held_out = set(ds.val.y.tolist()) | set(ds.test.y.tolist())
    gone = held_out - set(data.retain.y.tolist()) - set(data.forget.y.tolist())
    if not gone:
        return data
    return dataclasses.replace(
        data, forgotten_classes=tuple(sorted(set(data.forgotten_classes) | gone))
    )


def _unlearn(claim: jobs.Claim, rt: Runtime, progress: Progress) -> flows.Outcome:
    import unlearning as ul

    settings = rt.settings
    device = resolve_device(settings.device, settings.torch_threads)
    progress.set("loading")
    ds = open_dataset(rt, claim.dataset_id, claim.dataset_params, claim.num_classes)
    base_blob = rt.store.read_checkpoint(rt.store.get_manifest(claim.base_sha256))
    model = ul.load_checkpoint(
        base_blob,
        arch_id=claim.architecture,
        num_classes=claim.num_classes,
        head_module=claim.head_module,
    )
    data = incremental_data(ds, erased_before=claim.erased_sample_ids, new=claim.new_sample_ids)
    cache = feature_cache(rt, claim.dataset_id)
    hooks = ul.Hooks(
        progress=lambda phase, f: progress.set("unlearning", f), should_cancel=progress.lost.is_set
    )
    # The parent measured on the same split (class scope leaves the class out of TA), so the
    # gate compares like with like.
    parent_metrics = ul.evaluate(model, data, device=device, cache=cache)
    before = ul.confidence_histograms(model, data, device=device, cache=cache)
    progress.set("unlearning")
    methods = [settings.unlearning_method or ul.choose_method(data)]
    if settings.policy_fallback_method and settings.policy_fallback_method not in methods:
        methods.append(settings.policy_fallback_method)
    class_count = int(sum(1 for y in data.forget.y.tolist() if y in data.forgotten_classes))

    def measure(result: Any) -> dict[str, Any]:
        """What the version records of a result, and what the gate reads."""
        metrics: dict[str, Any] = dict(ul.evaluate(result.model, data, device=device, cache=cache))
        metrics.update(
            {
                "scope": data.scope,
                "forget_count": len(data.forget),
                "sample_forget_count": len(data.forget) - class_count,
                "val_count": len(data.val),
                "new_forget_count": len(claim.new_sample_ids),
                "erased_count": len(set(claim.erased_sample_ids) | set(claim.new_sample_ids)),
                "elapsed_s": round(result.elapsed_s, 4),
                "device": str(device),
            }
        )
        if result.info.get("unchanged"):  # the method measured that nothing had to change
            metrics["unchanged"] = result.info["unchanged"]
        metrics["parent"] = _finite(parent_metrics)
        after = ul.confidence_histograms(result.model, data, device=device, cache=cache)
        metrics["confidence"] = {"before": before, "after": after}  # drawn by the console
        return metrics

    refusals: list[str] = []
    for method in methods:
        try:
            result = ul.unlearn(model, data, method=method, device=device, hooks=hooks, cache=cache)
        except ul.NoChangeError as exc:  # the same on every attempt: refused like the gate's
            refusals.append(f"{method}: {exc}")
            log.warning("job %s: %s changed nothing (%s)", claim.job_id, method, exc)
            continue
        progress.set("verifying")
        metrics = measure(result)
        reason = gate(metrics, parent_metrics, data.scope, settings)
        metrics["gate_refusals"] = list(refusals)
        if reason is None:
            break
        refusals.append(f"{method}: {reason}")
        log.warning("job %s: verification refused %s (%s)", claim.job_id, method, reason)
    else:
        raise PolicyRefused("verification gate refused every method: " + "; ".join(refusals))
    if settings.policy_min_probe_ua is not None:
        # the operator's depth policy on the accepted result: where a linear probe still
        # recovers the forgotten samples from its backbone, `policy_depth_method` runs on the
        # parent instead (`unlearning.ensure_depth`); the escalated result passes the same
        # gate, and the version records the probe, the method used and why
        progress.set("verifying")
        policy = ul.DepthPolicy(
            min_probe_ua=settings.policy_min_probe_ua, escalate_to=settings.policy_depth_method
        )
        deeper, record = ul.ensure_depth(
            model,
            data,
            result,
            policy,
            device=device,
            hooks=hooks,
            cache=cache,
            probe_ua=metrics.get("probe_UA"),
        )
        if record["escalated"]:
            result, metrics = deeper, {**measure(deeper), "gate_refusals": list(refusals)}
            reason = gate(metrics, parent_metrics, data.scope, settings)
            if reason is not None:
                why = f"{record['reason']}; the gate refused {deeper.method}: {reason}"
                raise PolicyRefused(why)
        metrics["depth"] = record
    progress.set("publishing")
    blob = ul.save_checkpoint(
        result.model,
        arch_id=claim.architecture,
        extra_metadata={
            "lethe.model": claim.model_name,
            "lethe.version": str(claim.base_version + 1),
            "lethe.method": result.method,
        },
    )
    put = rt.store.put_checkpoint(blob)
    return flows.Outcome(
        method=result.method,
        params=dict(result.config),
        metrics=_finite(metrics),
        checkpoint_sha256=put.manifest.sha256,
        checkpoint_size=put.manifest.size,
        stored_bytes=put.new_bytes,
    )


def run_job(job_id: str, rt: Runtime) -> str:
    """Run one job to its end. Returns what happened: not-claimed, published, retrying,
    failed or lost (another attempt owns the job now)."""
    with session_scope(rt.session_factory, rt.dispatcher) as s:
        claim = jobs.claim(session=s, job_id=job_id, worker=rt.worker_name)
    if claim is None:
        return "not-claimed"
    log.info(
        "job %s claimed (attempt %d, %d requests)", job_id, claim.attempt, len(claim.request_ids)
    )
    progress = Progress()
    try:
        with Heartbeat(rt, job_id, claim.attempt, progress) as hb:
            hb.beat()
            outcome = _unlearn(claim, rt, progress)
    except Exception as exc:
        if progress.lost.is_set():
            log.warning("job %s attempt %d lost ownership; stopping", job_id, claim.attempt)
            return "lost"
        log.exception("job %s attempt %d failed", job_id, claim.attempt)
        with session_scope(rt.session_factory, rt.dispatcher) as s:
            job = jobs.fail_attempt(
                session=s,
                job_id=job_id,
                attempt=claim.attempt,
                reason=f"{exc.__class__.__name__}: {exc}",
                settings=rt.settings,
                retryable=not isinstance(exc, PolicyRefused),
                actor=f"worker:{rt.worker_name}",
            )
            status = job.status.value if job is not None else "lost"
        return "retrying" if status == "queued" else status
    with session_scope(rt.session_factory, rt.dispatcher) as s:
        version = flows.publish(
            session=s, claim=claim, outcome=outcome, settings=rt.settings, worker=rt.worker_name
        )
    if version is None:
        return "lost"
    log.info("job %s published version %d", job_id, version.number)
    after_publish(rt, claim)
    return "published"


def after_publish(rt: Runtime, claim: jobs.Claim) -> None:
    """Purge Lethe's copies of what the version erased (`workers.purge`). The version is
    published whatever happens here: a purge that fails is logged and housekeeping retries
    it (the job's phase stays `published` until it is done)."""
    from workers.purge import purge_model

    try:
        purge_model(rt, claim.model_id, [claim.job_id])
    except Exception:
        log.exception("job %s: purge failed; housekeeping retries it", claim.job_id)
    finally:
        _dataset.cache_clear()  # this process's in-memory copy of the data goes too
