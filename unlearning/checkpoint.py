"""Self-describing checkpoints as safetensors bytes (never pickle).

The safetensors metadata carries ``format``, ``arch_id`` and ``num_classes`` plus any extra
metadata (method, config, metrics) the caller adds, JSON-encoded where not a string. Tensor
names, shapes and dtypes are the model's own state dict, so a ``torchvision:`` model's
checkpoint loads into the unmodified torchvision builder with ``strict=True``.

A user's upload is read by ``read_state_dict``: a safetensors file, or a ``.pt`` state dict
saved with ``torch.save(model.state_dict(), path)``, read with ``torch.load(weights_only=True)``
(tensors and plain containers only). A pickled module, or anything else that would need
arbitrary code to load, is refused with ``NotAStateDict`` saying how to export one.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import zipfile
from collections.abc import Mapping
from typing import Any

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .architectures import SplitModel, get_architecture

__all__ = [
    "FORMAT",
    "NotAStateDict",
    "StateDictMismatch",
    "check_state_dict",
    "load_checkpoint",
    "read_metadata",
    "read_state_dict",
    "save_checkpoint",
    "to_safetensors",
]

FORMAT = "lethe-checkpoint/1"

EXPORT_HINT = (
    "export the weights as a state dict: "
    "safetensors.torch.save_file(model.state_dict(), 'model.safetensors') or "
    "torch.save(model.state_dict(), 'model.pt')"
)


class NotAStateDict(ValueError):
    """The upload is not a safetensors file nor a ``weights_only`` state dict."""


class StateDictMismatch(ValueError):
    """A state dict does not fit the architecture; lists what differs (first 100 of each)."""

    def __init__(
        self, arch_id: str, missing: list[str], unexpected: list[str], mismatched: list[str]
    ) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        if missing:
            parts.append(f"missing tensors {missing[:100]}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected[:100]}")
        if mismatched:
            parts.append(f"tensors of another shape or dtype {mismatched[:100]}")
        super().__init__(f"checkpoint does not match {arch_id!r}: " + "; ".join(parts))


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


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (n,) = struct.unpack("<Q", data[:8])
    return n <= len(data) - 8 and data[8:9] == b"{"


def read_state_dict(data: bytes) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file or of a ``torch.save``-d state dict (never unpickled
    beyond tensors and plain containers); ``NotAStateDict`` otherwise."""
    if _is_safetensors(data):
        try:
            return dict(st_load(data))
        except Exception as exc:  # safetensors raises its own error type
            raise NotAStateDict(f"not a valid safetensors file: {exc}") from exc
    if not (zipfile.is_zipfile(io.BytesIO(data)) or data[:1] == b"\x80"):
        raise NotAStateDict(f"neither a safetensors file nor a torch.save file; {EXPORT_HINT}")
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise NotAStateDict(
            "the .pt file holds Python objects beyond tensors (a pickled nn.Module or custom "
            f"classes), which Lethe never unpickles; {EXPORT_HINT}"
        ) from exc
    except Exception as exc:
        raise NotAStateDict(f"unreadable .pt file ({exc}); {EXPORT_HINT}") from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # the common {"state_dict": ..., "epoch": ...} training save
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise NotAStateDict(f"the .pt file is not a mapping of names to tensors; {EXPORT_HINT}")
    return dict(obj)


def to_safetensors(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """``tensors`` as safetensors bytes under their own names (shared storage is copied)."""
    return st_save(
        {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()},
        metadata=dict(metadata),
    )


def check_state_dict(
    model: torch.nn.Module, tensors: Mapping[str, torch.Tensor], arch_id: str
) -> None:
    """``StateDictMismatch`` listing missing, unexpected and mis-shaped tensors, if any."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    mismatched = [
        f"{k}: {tuple(tensors[k].shape)} {tensors[k].dtype}, expected {tuple(v.shape)} {v.dtype}"
        for k, v in expected.items()
        if k in tensors and (tensors[k].shape != v.shape or tensors[k].dtype != v.dtype)
    ]
    if missing or unexpected or mismatched:
        raise StateDictMismatch(arch_id, missing, unexpected, mismatched)


def load_checkpoint(
    data: bytes, arch_id: str, num_classes: int, *, head_module: str | None = None
) -> SplitModel:
    """Build ``arch_id`` and load ``data`` (safetensors or a ``.pt`` state dict) into it,
    refusing any name/shape/dtype mismatch (``StateDictMismatch``)."""
    if _is_safetensors(data):
        stored_arch = read_metadata(data).get("arch_id")
        if stored_arch is not None and stored_arch != arch_id:
            raise ValueError(f"checkpoint is for architecture {stored_arch!r}, not {arch_id!r}")
    tensors = read_state_dict(data)
    model = get_architecture(arch_id, num_classes=num_classes, head_module=head_module)
    check_state_dict(model, tensors, arch_id)
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
