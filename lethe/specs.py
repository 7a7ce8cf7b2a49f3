"""Publish each architecture's tensor spec to the database, so the torch-free API can check
an uploaded checkpoint's names, shapes and dtypes from its safetensors header alone.

The head's width depends on the number of classes: the spec is computed at two class
counts and every dimension that follows the class count is written as `"num_classes"`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from app.registry import service as registry

_PROBES = (7, 11)
_DTYPES = {
    "torch.float32": "F32",
    "torch.float16": "F16",
    "torch.bfloat16": "BF16",
    "torch.float64": "F64",
    "torch.int64": "I64",
    "torch.int32": "I32",
    "torch.int16": "I16",
    "torch.int8": "I8",
    "torch.uint8": "U8",
    "torch.bool": "BOOL",
}


def tensor_spec(arch_id: str) -> dict[str, Any]:
    import unlearning as ul

    a, b = (ul.get_architecture(arch_id, num_classes=k).state_dict() for k in _PROBES)
    if set(a) != set(b):
        raise ValueError(f"{arch_id}: tensor names depend on the number of classes")
    spec: dict[str, Any] = {}
    for name, ta in a.items():
        tb = b[name]
        if len(ta.shape) != len(tb.shape) or ta.dtype != tb.dtype:
            raise ValueError(f"{arch_id}.{name}: rank or dtype depends on the number of classes")
        shape: list[int | str] = []
        for da, db in zip(ta.shape, tb.shape, strict=True):
            if da == db:
                shape.append(int(da))
            elif (da, db) == _PROBES:
                shape.append("num_classes")
            else:
                raise ValueError(f"{arch_id}.{name}: shape is not linear in the class count")
        spec[name] = {"dtype": _DTYPES[str(ta.dtype)], "shape": shape}
    return spec


def publish_specs(factory: sessionmaker[Session]) -> list[str]:
    """Write the spec of every registered architecture; returns their ids."""
    import unlearning as ul
    from app.core.db import session_scope

    arch_ids = list(ul.list_architectures())
    specs = {arch: tensor_spec(arch) for arch in arch_ids}
    with session_scope(factory, None) as session:
        for arch, spec in specs.items():
            registry.put_architecture_spec(session=session, arch_id=arch, tensors=spec)
    return arch_ids
