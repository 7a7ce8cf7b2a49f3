"""Self-describing checkpoints as safetensors bytes (never pickle).

The safetensors metadata carries ``format``, ``arch_id`` and ``num_classes`` plus any extra
metadata (method, config, metrics) the caller adds, JSON-encoded where not a string.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .architectures import SplitModel, get_architecture

__all__ = ["FORMAT", "load_checkpoint", "read_metadata", "save_checkpoint"]

FORMAT = "lethe-checkpoint/1"


def save_checkpoint(
    model: SplitModel, arch_id: str, extra_metadata: Mapping[str, Any] | None = None
) -> bytes:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {
        k: v if isinstance(v, str) else json.dumps(v, sort_keys=True)
        for k, v in (extra_metadata or {}).items()
    }
    meta.update(format=FORMAT, arch_id=arch_id, num_classes=str(model.head.out_features))
    return st_save(tensors, metadata=meta)


def read_metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's ``__metadata__`` (without loading tensors)."""
    if len(data) < 8:
        raise ValueError("not a safetensors checkpoint: too short")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError("not a safetensors checkpoint: bad header length")
    try:
        header = json.loads(data[8 : 8 + n])
    except ValueError as exc:
        raise ValueError("not a safetensors checkpoint: unreadable header") from exc
    return dict(header.get("__metadata__") or {})


def load_checkpoint(data: bytes, arch_id: str, num_classes: int) -> SplitModel:
    """Build ``arch_id`` and load ``data`` into it, refusing any name/shape/dtype mismatch."""
    meta = read_metadata(data)
    stored_arch = meta.get("arch_id")
    if stored_arch is not None and stored_arch != arch_id:
        raise ValueError(f"checkpoint is for architecture {stored_arch!r}, not {arch_id!r}")
    try:
        tensors = st_load(data)
    except Exception as exc:  # safetensors raises its own error type
        raise ValueError(f"not a valid safetensors checkpoint: {exc}") from exc
    model = get_architecture(arch_id, num_classes=num_classes)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"checkpoint does not match {arch_id!r}: missing {missing[:10]}, "
            f"unexpected {unexpected[:10]}"
        )
    bad = [
        f"{k}: {tuple(tensors[k].shape)}/{tensors[k].dtype} != {tuple(v.shape)}/{v.dtype}"
        for k, v in expected.items()
        if tensors[k].shape != v.shape or tensors[k].dtype != v.dtype
    ]
    if bad:
        raise ValueError(
            f"checkpoint does not match {arch_id!r} (num_classes={num_classes}): "
            + "; ".join(bad[:10])
        )
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def state_dict_changes(
    before: Mapping[str, torch.Tensor], after: Mapping[str, torch.Tensor]
) -> tuple[str, ...]:
    """Keys whose tensors differ (bitwise) between two state dicts of the same model."""
    return tuple(
        k
        for k, v in after.items()
        if k not in before
        or v.shape != before[k].shape
        or not torch.equal(v.detach().cpu(), before[k].detach().cpu())
    )
