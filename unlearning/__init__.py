"""Lethe's unlearning engine: pure PyTorch (plus numpy and scikit-learn).

See docs/ENGINE_API.md for how the service calls it.
"""

from __future__ import annotations

from .architectures import SplitModel, get_architecture, list_architectures, register_architecture
from .attack import partial_pgd
from .cache import FeatureCache, backbone_digest, embed
from .checkpoint import load_checkpoint, save_checkpoint
from .datasets import list_datasets, load_dataset
from .engine import choose_method, unlearn
from .methods import get_method, list_methods, register
from .metrics import avg_gap, evaluate, mia_efficacy
from .report import confidence_histograms
from .training import TrainRecipe, default_recipe, train_model
from .types import Cancelled, Dataset, Hooks, Split, UnlearnData, UnlearnResult

__all__ = [
    "Cancelled",
    "Dataset",
    "FeatureCache",
    "Hooks",
    "Split",
    "SplitModel",
    "TrainRecipe",
    "UnlearnData",
    "UnlearnResult",
    "avg_gap",
    "backbone_digest",
    "choose_method",
    "confidence_histograms",
    "default_recipe",
    "embed",
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
    "register",
    "register_architecture",
    "save_checkpoint",
    "train_model",
    "unlearn",
]
