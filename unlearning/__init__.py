"""Lethe's unlearning engine: pure PyTorch (plus numpy and scikit-learn).

See docs/ENGINE_API.md for how the service calls it.
"""

from __future__ import annotations

from .architectures import SplitModel, get_architecture, list_architectures, register_architecture
from .attack import partial_pgd
from .cache import FeatureCache, backbone_digest, embed
from .checkpoint import load_checkpoint, read_state_dict, save_checkpoint
from .datasets import list_datasets, load_dataset
from .engine import choose_method, unlearn
from .methods import get_method, list_methods, register
from .metrics import avg_gap, evaluate, mia_efficacy
from .preprocess import Preprocess
from .report import confidence_histograms
from .sources import reference_dataset
from .traced import as_split_model
from .training import TrainRecipe, default_recipe, train_model
from .types import Cancelled, Dataset, Hooks, Split, UnlearnData, UnlearnResult

__all__ = [
    "Cancelled",
    "Dataset",
    "FeatureCache",
    "Hooks",
    "Preprocess",
    "Split",
    "SplitModel",
    "TrainRecipe",
    "UnlearnData",
    "UnlearnResult",
    "as_split_model",
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
    "read_state_dict",
    "reference_dataset",
    "register",
    "register_architecture",
    "save_checkpoint",
    "train_model",
    "unlearn",
]
