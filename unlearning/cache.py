"""Activations at a cut, computed once per backbone and reused by every later version.

A method that changes nothing below its cut (``lau`` with cut 1 changes only the head) leaves
those activations valid, so the service computes them once per original model and every
later version in the lineage reuses them. Keys:

- the **backbone digest**: sha256 over the names, dtypes, shapes and bytes of every tensor
  (parameters and buffers) below the cut, plus the cut itself; a method that changes the
  backbone produces a different digest, so its stale rows are never served;
- the **data fingerprint**, per sample: rows are stored by sample id together with a content
  checksum of the sample (two fixed random projections in float64 of an in-memory input; for
  a split read from a ``source``, a digest of its preprocessing, file and byte range, so a
  lookup never reads the data); a sample whose fingerprint changed under the same id is
  recomputed. An optional ``namespace`` (e.g. a dataset version) separates lineages further.

Inputs that must be computed are streamed through a ``DataLoader`` (``workers`` processes,
batches of ``batch_size``; on CUDA pinned memory and autocast), never loaded all at once.

On disk (``FeatureCache(directory)``) each key is one safetensors file ``<key>.safetensors``
(tensors ``features`` and ``checksums``; ids in the metadata), written atomically and read
**memory-mapped**: a lookup reads the pages of the rows it asks for, so an erasure that needs
a thousand rows of a 200,000-row table does not read the table. With a ``remote``
(``FeatureRemote``: the model store in the service) the directory is a read-through copy:
a table missing here is fetched from the remote, and a table written here is uploaded, so
every worker of a fleet shares one computation. ``FeatureCache()`` keeps everything in
memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
from collections.abc import Collection, Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
from safetensors.numpy import save_file
from torch import nn

from .architectures import SplitModel
from .loop import predict
from .types import Split

if TYPE_CHECKING:
    from .sources import RowProblems

__all__ = ["FeatureCache", "FeatureRemote", "backbone_digest", "drop_rows", "embed"]


class FeatureRemote(Protocol):
    """Shared storage for feature tables (implemented over the model store by the service)."""

    def download(self, key: str, dest: Path) -> bool:
        """Write table ``key`` to ``dest``; False if the remote does not have it."""
        ...

    def upload(self, key: str, src: Path) -> None: ...


def backbone_digest(lower: nn.Module, cut: int = 1, namespace: str = "") -> str:
    """sha256 over ``lower``'s tensors (names, dtypes, shapes, bytes), the cut, the namespace."""
    h = hashlib.sha256(f"lethe-features/1|cut={cut}|ns={namespace}".encode())
    for name, t in lower.state_dict().items():
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _checksums(split: Split) -> np.ndarray:
    if split.source is not None and split.rows is not None:
        return split.source.fingerprints(split.rows).numpy()
    flat = split.x.detach().reshape(len(split.x), -1).to("cpu", torch.float64)
    proj = torch.randn(
        flat.shape[1], 2, generator=torch.Generator().manual_seed(1234), dtype=torch.float64
    )
    out: np.ndarray = (flat @ proj).numpy()
    return out


@dataclass
class _Table:
    ids: list[str]
    index: dict[str, int]
    features: np.ndarray
    """(rows, ...) float32; memory-mapped when read from disk."""
    checksums: np.ndarray


def _read_table(path: Path) -> _Table:
    """Memory-map a table written by ``_write_table`` (safetensors layout, little-endian)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    meta = header.pop("__metadata__", {}) or {}
    ids: list[str] = json.loads(meta.get("ids", "[]"))
    arrays = {}
    for name, dtype in (("features", np.float32), ("checksums", np.float64)):
        spec = header[name]
        begin, end = spec["data_offsets"]
        shape = tuple(spec["shape"])
        if end == begin:
            arrays[name] = np.zeros(shape, dtype=dtype)
        else:
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=8 + n + begin, shape=shape)
    return _Table(ids, {i: r for r, i in enumerate(ids)}, arrays["features"], arrays["checksums"])


def _write_table(directory: Path, name: str, table: _Table) -> Path:
    live = sorted(table.index.items(), key=lambda kv: kv[1])
    rows = np.array([r for _, r in live], dtype=np.int64)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    os.close(fd)
    contiguous = len(rows) == len(table.ids) and bool((rows == np.arange(len(rows))).all())
    feats = table.features if contiguous else table.features[rows]
    sums = table.checksums if contiguous else table.checksums[rows]
    save_file(
        {
            "features": np.ascontiguousarray(feats, dtype=np.float32),
            "checksums": np.ascontiguousarray(sums, dtype=np.float64),
        },
        tmp,
        metadata={"ids": json.dumps([i for i, _ in live]), "key": name},
    )
    final = directory / f"{name}.safetensors"
    os.replace(tmp, final)
    return final


def drop_rows(path: Path, ids: Collection[str]) -> int:
    """Rewrite the table file ``path`` (atomically, under the same name) without the rows
    of ``ids``; how many rows went. Nothing is written when none of ``ids`` is there. The
    new file is written from the kept rows only, so the dropped activations' bytes are in
    no file (the old one is replaced, not edited)."""
    table = _read_table(path)
    gone = [i for i in table.ids if i in ids]
    if not gone:
        return 0
    for i in gone:
        table.index.pop(i, None)
    _write_table(path.parent, path.name.removesuffix(".safetensors"), table)
    return len(gone)


class FeatureCache:
    """Activations at a cut by backbone digest and sample; ``directory=None`` keeps them in memory.

    ``computed`` counts the samples whose activations had to be computed (for tests and timing).
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        namespace: str = "",
        batch_size: int = 1024,
        workers: int = 0,
        remote: FeatureRemote | None = None,
    ) -> None:
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        if remote is not None and self.directory is None:
            raise ValueError("a remote feature store needs a local directory to copy into")
        self.namespace = namespace
        self.batch_size = batch_size
        self.workers = workers
        self.remote = remote
        self.computed = 0
        self._tables: dict[str, _Table] = {}

    def key(self, model: SplitModel, cut: int = 1) -> str:
        lower, _ = model.split(cut)
        return backbone_digest(lower, cut, self.namespace)

    def features(
        self,
        model: SplitModel,
        *splits: Split,
        cut: int = 1,
        device: torch.device | str = "cpu",
        progress: _Progress | None = None,
        problems: RowProblems | None = None,
    ) -> list[torch.Tensor]:
        """Activations at ``cut`` for each split (in split order), on ``device``.

        ``progress(fraction)`` is called while missing activations are computed.

        With ``problems`` (a registration's one pass over its data), every source-backed
        row is read and decoded exactly once: a row whose file is missing or undecodable
        is collected there instead of stopping the pass, rows whose activations were
        already cached are decoded once too (so every row is checked), and if any row
        had a problem ``UnreadableRows`` is raised and nothing computed is kept (no table
        written here or uploaded to the remote).
        """
        dev = torch.device(device)
        lower, _ = model.split(cut)
        key = backbone_digest(lower, cut, self.namespace)
        table = self._load(key)
        plans: list[tuple[Split, np.ndarray, np.ndarray, np.ndarray]] = []
        probes: list[np.ndarray] = []
        seen: set[str] = set()  # a split given twice (test = val) is read once
        todo = 0
        for split in splits:
            sums = _checksums(split) if len(split) else np.zeros((0, 2))
            rows = np.array(
                [table.index.get(i, -1) if table else -1 for i in split.ids], dtype=np.int64
            )
            known = rows >= 0
            if table is not None and known.any():
                stored = _gather(table.checksums, rows[known])
                ok = np.isclose(stored, sums[known], rtol=1e-7, atol=1e-6).all(axis=1)
                rows[np.flatnonzero(known)[~ok]] = -1
            need = np.array(
                [i for i in np.flatnonzero(rows < 0) if split.ids[i] not in seen], dtype=np.int64
            )
            seen.update(split.ids[i] for i in need)
            probe = np.zeros(0, dtype=np.int64)
            if problems is not None and split.source is not None:
                # rows already cached are decoded once too, so that every row is checked
                probe = np.array(
                    [i for i in np.flatnonzero(rows >= 0) if split.ids[i] not in seen],
                    dtype=np.int64,
                )
                seen.update(split.ids[i] for i in probe)
            plans.append((split, rows, sums, need))
            probes.append(probe)
            todo += len(need) + len(probe)
        done = 0
        fresh_parts: list[tuple[list[str], np.ndarray, np.ndarray]] = []
        for (split, _, sums, need), probe in zip(plans, probes, strict=True):
            if len(need):
                fresh = self._compute(lower, split, need, dev, done, todo, progress, problems)
                done += len(need)
                fresh_parts.append(([split.ids[i] for i in need], fresh, sums[need]))
            if len(probe):
                assert split.rows is not None and problems is not None
                from .sources import find_problems

                find_problems(
                    split.source,  # type: ignore[arg-type]
                    rows=split.rows[torch.from_numpy(probe)],
                    workers=self.workers,
                    into=problems,
                    progress=_scaled(progress, done, len(probe), todo),
                )
                done += len(probe)
        if problems is not None and problems.count:
            from .sources import UnreadableRows

            raise UnreadableRows(problems)  # nothing appended, written or uploaded
        for ids, fresh, fresh_sums in fresh_parts:
            self.computed += len(ids)
            table = self._append(key, table, ids, fresh, fresh_sums)
        if table is not None:
            for split, rows, _, _ in plans:
                missing = np.flatnonzero(rows < 0)
                rows[missing] = [table.index[split.ids[i]] for i in missing]
        if fresh_parts and table is not None:
            self._save(key, table)
        out = []
        for split, rows, _, _ in plans:
            if len(split) == 0:
                out.append(_empty_like(lower, split, table, dev))
                continue
            assert table is not None
            feats = _gather(table.features, rows).astype(np.float32, copy=False)
            out.append(torch.from_numpy(feats).to(dev))
        return out

    def _compute(
        self,
        lower: nn.Module,
        split: Split,
        need: np.ndarray,
        device: torch.device,
        done: int,
        todo: int,
        progress: _Progress | None,
        problems: RowProblems | None = None,
    ) -> np.ndarray:
        if split.source is None:
            idx = torch.from_numpy(need)
            return (
                predict(lower, split.x[idx], device, batch_size=self.batch_size)
                .to("cpu", torch.float32)
                .numpy()
            )
        from .sources import checked_loader, loader

        assert split.rows is not None
        rows = split.rows[torch.from_numpy(need)]
        if problems is not None:
            checked = checked_loader(
                split.source,  # type: ignore[arg-type]
                rows,
                batch_size=self.batch_size,
                workers=self.workers,
                device=device,
            )
            ids = [split.ids[i] for i in need]
            return _stream_checked(lower, checked, device, ids, problems, done, todo, progress)
        batches = loader(
            split.source,  # type: ignore[arg-type]
            rows,
            batch_size=self.batch_size,
            workers=self.workers,
            device=device,
        )
        return stream_features(lower, batches, device, len(rows), done, todo, progress)

    def _local(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / f"{key}.safetensors"

    def _load(self, key: str) -> _Table | None:
        if key in self._tables:
            return self._tables[key]
        path = self._local(key)
        if path is None:
            return None
        if not path.exists() and self.remote is not None:
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            os.close(fd)
            if self.remote.download(key, Path(tmp)):
                os.replace(tmp, path)
            else:
                os.unlink(tmp)
        if not path.exists():
            return None
        table = _read_table(path)
        self._tables[key] = table
        return table

    def _append(
        self,
        key: str,
        table: _Table | None,
        ids: list[str],
        feats: np.ndarray,
        sums: np.ndarray,
    ) -> _Table:
        if table is None:
            table = _Table([], {}, feats[:0], sums[:0])
        for i in ids:  # a replaced row stays in the arrays but is no longer indexed
            table.index[i] = len(table.ids)
            table.ids.append(i)
        if len(table.features):
            table.features = np.concatenate([np.asarray(table.features), feats])
            table.checksums = np.concatenate([np.asarray(table.checksums), sums])
        else:
            table.features, table.checksums = feats, sums
        self._tables[key] = table
        return table

    def _save(self, key: str, table: _Table) -> None:
        if self.directory is None:
            return
        path = _write_table(self.directory, key, table)
        self._tables[key] = _read_table(path)  # memory-mapped from now on
        if self.remote is not None:
            self.remote.upload(key, path)


class _Progress(Protocol):
    def __call__(self, fraction: float, /) -> None: ...


def _scaled(progress: _Progress | None, done: int, part: int, todo: int) -> _Progress | None:
    """``progress`` for a part of ``part`` rows after ``done`` of ``todo``."""
    if progress is None or not todo:
        return None
    outer = progress

    def inner(fraction: float, /) -> None:
        outer((done + fraction * part) / todo)

    return inner


def _gather(features: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``features[rows]`` reading the rows in file order (one pass over the pages needed)."""
    order = np.argsort(rows, kind="stable")
    picked = np.asarray(features[rows[order]])
    out = np.empty_like(picked)
    out[order] = picked
    return out


def _empty_like(
    lower: nn.Module, split: Split, table: _Table | None, device: torch.device
) -> torch.Tensor:
    if table is not None and len(table.features):
        return torch.empty((0, *table.features.shape[1:]), device=device)
    if split.source is None:
        return predict(lower, split.x, device)
    return torch.empty(0, device=device)


@torch.no_grad()
def stream_features(
    lower: nn.Module,
    batches: Sequence[torch.Tensor] | torch.utils.data.DataLoader[torch.Tensor],
    device: torch.device,
    total: int,
    done: int = 0,
    todo: int = 0,
    progress: _Progress | None = None,
) -> np.ndarray:
    """``lower`` over every batch (eval mode; autocast bf16 on CUDA), collected on the CPU."""
    was = lower.training
    lower.eval()
    out: np.ndarray | None = None
    at = 0
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    try:
        for x in batches:
            with amp:
                z = lower(x.to(device, non_blocking=True))
            z_np = z.float().cpu().numpy()
            if out is None:
                out = np.empty((total, *z_np.shape[1:]), dtype=np.float32)
            out[at : at + len(z_np)] = z_np
            at += len(z_np)
            if progress is not None and todo:
                progress((done + at) / todo)
    finally:
        lower.train(was)
    if out is None:
        return np.zeros((0,), dtype=np.float32)
    return out


@torch.no_grad()
def _stream_checked(
    lower: nn.Module,
    batches: Iterable[tuple[torch.Tensor | None, torch.Tensor, list[str]]],
    device: torch.device,
    ids: Sequence[str],
    problems: RowProblems,
    done: int,
    todo: int,
    progress: _Progress | None,
) -> np.ndarray:
    """``stream_features`` over a ``checked_loader``: the rows that could not be read are
    added to ``problems`` (by sample id) and left as zeros in the result."""
    was = lower.training
    lower.eval()
    out: np.ndarray | None = None
    at = 0
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    try:
        for x, ok, reasons in batches:
            for k, why in enumerate(reasons):
                if why:
                    problems.add(ids[at + k], why)
            problems.checked += len(reasons)
            if x is not None:
                with amp:
                    z = lower(x.to(device, non_blocking=True))
                z_np = z.float().cpu().numpy()
                if out is None:
                    out = np.zeros((len(ids), *z_np.shape[1:]), dtype=np.float32)
                out[at + np.flatnonzero(ok.numpy())] = z_np
            at += len(reasons)
            if progress is not None and todo:
                progress((done + at) / todo)
    finally:
        lower.train(was)
    if out is None:
        return np.zeros((len(ids), 0), dtype=np.float32)
    return out


def embed(
    model: SplitModel,
    *splits: Split,
    cut: int = 1,
    device: torch.device | str = "cpu",
    cache: FeatureCache | None = None,
) -> list[torch.Tensor]:
    """Activations at ``cut`` for each split, through ``cache`` when one is given."""
    if cache is not None:
        return cache.features(model, *splits, cut=cut, device=device)
    if any(s.source is not None for s in splits):
        return FeatureCache().features(model, *splits, cut=cut, device=device)
    lower, _ = model.split(cut)
    return [predict(lower, s.x, device) for s in splits]
