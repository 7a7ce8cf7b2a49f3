"""The engine runs on a GPU machine with only torch, numpy and scikit-learn installed
(torchvision, and Pillow which it brings, only for ``torchvision:`` models and image files)."""

from __future__ import annotations

import ast
from pathlib import Path

import unlearning

FORBIDDEN = {
    "app",
    "workers",
    "models_store",
    "fastapi",
    "sqlalchemy",
    "celery",
    "redis",
    "pydantic",
    "boto3",
}
ALLOWED_THIRD_PARTY = {"torch", "numpy", "sklearn", "safetensors", "unlearning"}
LAZY_ONLY = {"mnist1d", "torchvision", "PIL"}


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(top-level module, imported at module level?) for every absolute import."""
    out = []
    top = {id(n) for n in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.module.split(".")[0], id(node) in top))
    return out


def test_engine_imports_nothing_from_the_service() -> None:
    import sys

    stdlib = set(sys.stdlib_module_names) | {"__future__"}
    root = Path(unlearning.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) > 10
    for path in files:
        for name, at_top in _imports(ast.parse(path.read_text(), str(path))):
            assert name not in FORBIDDEN, f"{path}: imports {name}"
            if name in LAZY_ONLY:
                assert not at_top, f"{path}: {name} must be imported lazily"
                continue
            assert name in stdlib | ALLOWED_THIRD_PARTY, f"{path}: imports {name}"
