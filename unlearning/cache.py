"""Activations at a cut, computed once per backbone and reused by every later version.

A method that changes nothing below its cut (``lau`` with cut 1 changes only the head) leaves
those activations valid, so the service computes them once per original model and every
later version in the lineage reuses them. Keys:

- the **backbone digest**: sha256 over the names, dtypes, shapes and bytes of every tensor
  (parameters and buffers) below the cut, plus the cut itself; a method that changes the
  backbone produces a different digest, so its stale rows are never served;
- the **data fingerprint**, per sample: rows are stored by sample id together with a content
  checksum of the sample (two fixed random projections in float64); a sample whose content
  changed under the same id is recomputed. Being per sample, it lets a later version whose
  retain set shrank reuse rows; an optional ``namespace`` (e.g. a dataset version) separates
  lineages further.

On disk (``FeatureCache(directory)``) each key is one safetensors file ``<key>.safetensors``
(tensors ``features`` and ``checksums``; ids in the metadata), written atomically.
``FeatureCache()`` keeps everything in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from .architectures import SplitModel
from .loop import predict
from .types import Split

__all__ = ["FeatureCache", "backbone_digest", "embed"]


def backbone_digest(lower: nn.Module, cut: int = 1, namespace: str = "") -> str:
    """sha256 over ``lower``'s tensors (names, dtypes, shapes, bytes), the cut, the namespace."""
    h = hashlib.sha256(f"lethe-features/1|cut={cut}|ns={namespace}".encode())
    for name, t in lower.state_dict().items():
        t = t.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"|{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _checksums(x: torch.Tensor) -> torch.Tensor:
    flat = x.detach().reshape(len(x), -1).to("cpu", torch.float64)
    proj = torch.randn(
        flat.shape[1], 2, generator=torch.Generator().manual_seed(1234), dtype=torch.float64
    )
    return flat @ proj


@dataclass
class _Table:
    ids: list[str]
    index: dict[str, int]
    features: torch.Tensor
    checksums: torch.Tensor


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
    ) -> None:
        self.directory = None if directory is None else Path(directory)
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.batch_size = batch_size
        self.computed = 0
        self._tables: dict[str, _Table] = {}

    def key(self, model: SplitModel, cut: int = 1) -> str:
        lower, _ = model.split(cut)
        return backbone_digest(lower, cut, self.namespace)

    def features(
        self, model: SplitModel, *splits: Split, cut: int = 1, device: torch.device | str = "cpu"
    ) -> list[torch.Tensor]:
        """Activations at ``cut`` for each split (in split order), on ``device``."""
        lower, _ = model.split(cut)
        key = backbone_digest(lower, cut, self.namespace)
        table = self._load(key)
        out, dirty = [], False
        for split in splits:
            if len(split) == 0:
                out.append(predict(lower, split.x, device))
                continue
            sums = _checksums(split.x)
            rows = torch.tensor(
                [table.index.get(i, -1) if table else -1 for i in split.ids], dtype=torch.long
            )
            known = rows >= 0
            if table is not None and bool(known.any()):
                ok = torch.isclose(
                    table.checksums[rows[known]], sums[known], rtol=1e-7, atol=1e-6
                ).all(dim=1)
                stale = known.nonzero().flatten()[~ok]
                rows[stale] = -1
            need = (rows < 0).nonzero().flatten()
            if len(need):
                fresh = predict(lower, split.x[need], device, batch_size=self.batch_size)
                fresh = fresh.to("cpu", torch.float32)
                self.computed += len(need)
                table = self._append(
                    key, table, [split.ids[i] for i in need.tolist()], fresh, sums[need]
                )
                rows[need] = torch.tensor(
                    [table.index[split.ids[i]] for i in need.tolist()], dtype=torch.long
                )
                dirty = True
            assert table is not None or len(split) == 0
            feats = table.features[rows] if table is not None else torch.empty(0)
            out.append(feats.to(device))
        if dirty and table is not None:
            self._save(key, table)
        return out

    def _load(self, key: str) -> _Table | None:
        if key in self._tables:
            return self._tables[key]
        if self.directory is None:
            return None
        path = self.directory / f"{key}.safetensors"
        if not path.exists():
            return None
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            ids = json.loads((f.metadata() or {}).get("ids", "[]"))
        tensors = load_file(str(path))
        table = _Table(
            ids, {i: r for r, i in enumerate(ids)}, tensors["features"], tensors["checksums"]
        )
        self._tables[key] = table
        return table

    def _append(
        self,
        key: str,
        table: _Table | None,
        ids: list[str],
        feats: torch.Tensor,
        sums: torch.Tensor,
    ) -> _Table:
        if table is None:
            table = _Table([], {}, feats[:0], sums[:0])
        for i in ids:  # a replaced row stays in memory but is no longer indexed
            table.index[i] = len(table.ids)
            table.ids.append(i)
        table.features = torch.cat([table.features, feats])
        table.checksums = torch.cat([table.checksums, sums])
        self._tables[key] = table
        return table

    def _save(self, key: str, table: _Table) -> None:
        if self.directory is None:
            return
        live = sorted(table.index.items(), key=lambda kv: kv[1])
        rows = torch.tensor([r for _, r in live], dtype=torch.long)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        os.close(fd)
        save_file(
            {
                "features": table.features[rows].contiguous(),
                "checksums": table.checksums[rows].contiguous(),
            },
            tmp,
            metadata={"ids": json.dumps([i for i, _ in live]), "key": key},
        )
        os.replace(tmp, self.directory / f"{key}.safetensors")


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
    lower, _ = model.split(cut)
    return [predict(lower, s.x, device) for s in splits]
