"""Lethe's unlearning engine: pure PyTorch (plus numpy and scikit-learn).

See docs/ENGINE_API.md for how the service calls it.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .architectures import (
        SplitModel,
        get_architecture,
        list_architectures,
        register_architecture,
    )
    from .attack import partial_pgd
    from .cache import FeatureCache, backbone_digest, embed
    from .checkpoint import load_checkpoint, read_state_dict, save_checkpoint
    from .datasets import list_datasets, load_dataset
    from .engine import DepthPolicy, NoChangeError, choose_method, ensure_depth, unlearn
    from .methods import get_method, list_methods, register
    from .metrics import MIN_VAL, avg_gap, check_forgetting, evaluate, mia_efficacy
    from .preprocess import Preprocess
    from .report import confidence_histograms
    from .sources import reference_dataset
    from .traced import as_split_model
    from .training import TrainRecipe, default_recipe, train_model
    from .types import Cancelled, Dataset, Hooks, Split, UnlearnData, UnlearnResult

_LAZY = {
    "Cancelled": ".types",
    "Dataset": ".types",
    "DepthPolicy": ".engine",
    "FeatureCache": ".cache",
    "Hooks": ".types",
    "MIN_VAL": ".metrics",
    "NoChangeError": ".engine",
    "Preprocess": ".preprocess",
    "Split": ".types",
    "SplitModel": ".architectures",
    "TrainRecipe": ".training",
    "UnlearnData": ".types",
    "UnlearnResult": ".types",
    "as_split_model": ".traced",
    "avg_gap": ".metrics",
    "backbone_digest": ".cache",
    "check_forgetting": ".metrics",
    "choose_method": ".engine",
    "confidence_histograms": ".report",
    "default_recipe": ".training",
    "embed": ".cache",
    "ensure_depth": ".engine",
    "evaluate": ".metrics",
    "get_architecture": ".architectures",
    "get_method": ".methods",
    "list_architectures": ".architectures",
    "list_datasets": ".datasets",
    "list_methods": ".methods",
    "load_checkpoint": ".checkpoint",
    "load_dataset": ".datasets",
    "mia_efficacy": ".metrics",
    "partial_pgd": ".attack",
    "read_state_dict": ".checkpoint",
    "reference_dataset": ".sources",
    "register": ".methods",
    "register_architecture": ".architectures",
    "save_checkpoint": ".checkpoint",
    "train_model": ".training",
    "unlearn": ".engine",
}


def __getattr__(name: str) -> Any:
    """Names load on first use, so ``import unlearning.bench`` (``lethe bench --help``) does
    not pay for torch and scikit-learn. Submodules (``ul.architectures``) load the same way."""
    module = _LAZY.get(name)
    if module is None:
        if importlib.util.find_spec(f"{__name__}.{name}") is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        return importlib.import_module(f".{name}", __name__)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "MIN_VAL",
    "Cancelled",
    "Dataset",
    "DepthPolicy",
    "FeatureCache",
    "Hooks",
    "NoChangeError",
    "Preprocess",
    "Split",
    "SplitModel",
    "TrainRecipe",
    "UnlearnData",
    "UnlearnResult",
    "as_split_model",
    "avg_gap",
    "backbone_digest",
    "check_forgetting",
    "choose_method",
    "confidence_histograms",
    "default_recipe",
    "embed",
    "ensure_depth",
    "evaluate",
    "get_architecture",
    "get_method",
    "list_architectures",
    "list_datasets",
    "list_methods",
    "load_checkpoint",
    "load_dataset",
    "mia_efficacy",
    "partial_pgd",
    "read_state_dict",
    "reference_dataset",
    "register",
    "register_architecture",
    "save_checkpoint",
    "train_model",
    "unlearn",
]
