"""The engine's vocabulary: splits of data, what a method sees, what it returns.

Everything here is plain PyTorch so the engine runs on a GPU machine with nothing
but torch, numpy and scikit-learn installed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import torch

if TYPE_CHECKING:
    from .architectures import SplitModel

__all__ = [
    "Cancelled",
    "Dataset",
    "Hooks",
    "SampleSource",
    "Split",
    "UnlearnData",
    "UnlearnResult",
]


class Cancelled(Exception):
    """Raised inside a method when its hooks report that the job was cancelled."""


class Split:
    """A set of samples: inputs, integer labels, stable string ids, optional subject refs.

    Inputs are either a tensor ``x`` or rows of a ``source`` (a ``torch.utils.data.Dataset``
    returning one input tensor per index, e.g. ``unlearning.sources.ImageSource``): then
    ``x`` is only read (all rows, batched) when a method asks for it, and the feature cache
    streams just the rows it lacks, so a layer-level erasure never loads the dataset.
    """

    def __init__(
        self,
        x: torch.Tensor | None,
        y: torch.Tensor,
        ids: tuple[str, ...],
        subjects: tuple[str | None, ...] | None = None,
        *,
        source: SampleSource | None = None,
        rows: torch.Tensor | None = None,
    ) -> None:
        if x is None and source is None:
            raise ValueError("a Split needs inputs x or a source")
        self._x = x
        self.y = y
        self.ids = ids
        self.subjects = subjects
        self.source = source
        self.rows = rows if rows is not None or source is None else torch.arange(len(ids))

    @property
    def x(self) -> torch.Tensor:
        if self._x is None:
            assert self.source is not None and self.rows is not None
            self._x = self.source.load(self.rows)
        return self._x

    def __len__(self) -> int:
        return len(self.ids)

    def without_classes(self, classes: tuple[int, ...]) -> Split:
        """The rows whose label is none of ``classes`` (itself when there are none)."""
        if not classes:
            return self
        return self.subset(~torch.isin(self.y, torch.tensor(classes, dtype=torch.long)))

    def subset(self, index: torch.Tensor) -> Split:
        """Rows selected by a boolean mask or an index tensor (order kept)."""
        if index.dtype == torch.bool:
            index = index.nonzero().flatten()
        rows = index.tolist()
        subjects = None if self.subjects is None else tuple(self.subjects[i] for i in rows)
        ids = tuple(self.ids[i] for i in rows)
        if self._x is None:
            assert self.rows is not None
            return Split(
                None, self.y[index], ids, subjects, source=self.source, rows=self.rows[index]
            )
        return Split(self._x[index], self.y[index], ids, subjects)


class SampleSource(Protocol):
    """Where a Split's inputs live when they are not in memory."""

    def __len__(self) -> int: ...

    def __getitem__(self, row: int) -> torch.Tensor: ...

    def load(self, rows: torch.Tensor) -> torch.Tensor:
        """The inputs of ``rows`` stacked into one tensor."""
        ...

    def fingerprints(self, rows: torch.Tensor) -> torch.Tensor:
        """(len(rows), 2) float64 identifying each row's content without reading it."""
        ...


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
        head = self.model.upper_prefixes(1)
        return any(not k.startswith(head) for k in self.changed)
