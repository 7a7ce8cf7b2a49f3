"""The engine's vocabulary: splits of data, what a method sees, what it returns.

Everything here is plain PyTorch so the engine runs on a GPU machine with nothing
but torch, numpy and scikit-learn installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch

if TYPE_CHECKING:
    from .architectures import SplitModel

__all__ = [
    "Cancelled",
    "Dataset",
    "Hooks",
    "Split",
    "UnlearnData",
    "UnlearnResult",
]


class Cancelled(Exception):
    """Raised inside a method when its hooks report that the job was cancelled."""


@dataclass(frozen=True)
class Split:
    """A set of samples: inputs, integer labels, stable string ids, optional subject refs."""

    x: torch.Tensor
    y: torch.Tensor
    ids: tuple[str, ...]
    subjects: tuple[str | None, ...] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def subset(self, index: torch.Tensor) -> Split:
        """Rows selected by a boolean mask or an index tensor (order kept)."""
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        rows = index.tolist()
        subjects = None if self.subjects is None else tuple(self.subjects[i] for i in rows)
        return Split(self.x[index], self.y[index], tuple(self.ids[i] for i in rows), subjects)


Scope = Literal["class", "sample", "mixed", "empty"]


@dataclass(frozen=True)
class UnlearnData:
    """What a method sees: the training set cut into retain and forget, plus held-out data.

    `val` is held out from training: methods may use it for calibration and the MIA uses
    it as non-members. `test` is only for reporting TA; no method may look at it.
    """

    retain: Split
    forget: Split
    val: Split
    test: Split
    num_classes: int
    forgotten_classes: tuple[int, ...] = ()

    @property
    def scope(self) -> Scope:
        if len(self.forget) == 0:
            return "empty"
        in_class = torch.isin(self.forget.y, torch.tensor(self.forgotten_classes, dtype=torch.long))
        if bool(in_class.all()):
            return "class"
        return "mixed" if bool(in_class.any()) else "sample"


@dataclass(frozen=True)
class Dataset:
    """A dataset by id: train (the model's training set), val (held out), test (TA only)."""

    id: str
    num_classes: int
    input_shape: tuple[int, ...]
    train: Split
    val: Split
    test: Split
    params: Mapping[str, Any] = field(default_factory=dict)

    def unlearn_data(self, forget_ids: Iterable[str]) -> UnlearnData:
        """Split the training set into retain and forget; unknown ids raise KeyError."""
        wanted = set(forget_ids)
        known = set(self.train.ids)
        missing = wanted - known
        if missing:
            raise KeyError(f"unknown sample ids: {sorted(missing)[:20]}")
        mask = torch.tensor([i in wanted for i in self.train.ids], dtype=torch.bool)
        forget = self.train.subset(mask)
        retain = self.train.subset(~mask)
        retained_classes = set(retain.y.tolist())
        forgotten = tuple(sorted(set(forget.y.tolist()) - retained_classes))
        return UnlearnData(retain, forget, self.val, self.test, self.num_classes, forgotten)


def _no_progress(phase: str, fraction: float) -> None:
    return None


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Hooks:
    """Callbacks a method calls: progress(phase, fraction in [0, 1]) and a cancel check."""

    progress: Callable[[str, float], None] = _no_progress
    should_cancel: Callable[[], bool] = _never

    def check(self) -> None:
        if self.should_cancel():
            raise Cancelled("unlearning cancelled")


@dataclass
class UnlearnResult:
    """The unlearned model and what was done to it."""

    model: SplitModel
    method: str
    config: dict[str, Any]
    elapsed_s: float
    changed: tuple[str, ...]
    """State-dict keys whose values differ from the input model."""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def backbone_changed(self) -> bool:
        head = {k for k in self.changed if k.startswith("head.")}
        return bool(set(self.changed) - head)
