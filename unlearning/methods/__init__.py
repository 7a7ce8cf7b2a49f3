"""Unlearning methods: one file each, registered by name (see ``registry``)."""

from __future__ import annotations

import importlib
import importlib.util

from . import finetune, lau, neggrad, random_label, retrain, salun
from .registry import Method, get_method, list_methods, register

__all__ = ["Method", "get_method", "list_methods", "register"]

# Optional methods living in their own files; imported when present (errors surface).
for _name in ("lau_calibrated",):
    if importlib.util.find_spec(f"{__name__}.{_name}") is not None:
        importlib.import_module(f"{__name__}.{_name}")

del finetune, lau, neggrad, random_label, retrain, salun
