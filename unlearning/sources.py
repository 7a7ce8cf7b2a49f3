"""Datasets by reference: a manifest of rows plus a location where the data stays.

A **manifest** is one row per sample: ``sample_id``, ``label``, ``split`` (``train``, ``val``
or ``test``) and optionally ``subject_ref`` and ``uri`` (``Rows.from_records`` takes the
parsed rows; the torch-free CSV / JSON Lines reader is ``models_store.dataset_manifest``).

A **location** is anything with ``read(path, start, length)`` and ``list()`` (relative paths):
``LocalLocation`` for a folder here; ``models_store.locations.S3Location`` for an S3 prefix.
Both are picklable, so ``DataLoader`` worker processes read in parallel.

**Layouts** (how a row finds its bytes):

- ``image-files``: each row's ``uri`` is an image file relative to the location;
- ``image-folder``: an ImageFolder tree ``<class>/<sample_id>.<png|jpg|jpeg|webp|bmp>``
  (rows may still name a ``uri``);
- ``webdataset``: tar shards (``*.tar``) whose members are ``<sample_id>.<ext>`` as
  WebDataset writes them; shard headers are indexed once, so any sample is one ranged read.

Decoding is Pillow, preprocessing ``unlearning.preprocess.Preprocess`` (the same for every
split). Nothing is held in memory but the rows; inputs are read in batches by a ``DataLoader``
when a method or the feature cache needs them.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from torch.utils.data import Dataset as TorchDataset

from .preprocess import Preprocess
from .types import Dataset, Split

__all__ = [
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "LocalLocation",
    "Location",
    "RowProblems",
    "Rows",
    "SampleProblem",
    "UnreadableRows",
    "checked_loader",
    "find_problems",
    "loader",
    "reference_dataset",
]

Layout = Literal["image-files", "image-folder", "webdataset"]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
SPLITS = ("train", "val", "test")


class Location(Protocol):
    def read(self, path: str, start: int = 0, length: int = -1) -> bytes:
        """Bytes ``[start, start + length)`` of ``path`` (all of it for ``length=-1``)."""
        ...

    def list(self) -> list[str]:
        """Every file below the location, as relative paths with ``/``."""
        ...

    def describe(self) -> str: ...


class LocalLocation:
    """A folder on this machine; paths never leave it."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    def _path(self, path: str) -> Path:
        full = (self.root / path).resolve()
        if not full.is_relative_to(self.root):
            raise ValueError(f"{path!r} lies outside the dataset location")
        return full

    def read(self, path: str, start: int = 0, length: int = -1) -> bytes:
        with open(self._path(path), "rb") as f:
            f.seek(start)
            return f.read(length)

    def list(self) -> list[str]:
        out = []
        for dirpath, _dirs, files in os.walk(self.root):
            rel = Path(dirpath).relative_to(self.root).as_posix()
            out += [name if rel == "." else f"{rel}/{name}" for name in files]
        return sorted(out)

    def describe(self) -> str:
        return str(self.root)


@dataclass(frozen=True)
class Rows:
    """A manifest's columns (every row once, in manifest order)."""

    ids: tuple[str, ...]
    labels: tuple[int, ...]
    splits: tuple[str, ...]
    subjects: tuple[str | None, ...]
    uris: tuple[str | None, ...]

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, Any]]) -> Rows:
        ids, labels, splits, subjects, uris = [], [], [], [], []
        seen: set[str] = set()
        for n, rec in enumerate(records, start=1):
            sid = str(rec.get("sample_id") or "")
            if not sid:
                raise ValueError(f"row {n}: sample_id is empty")
            if sid in seen:
                raise ValueError(f"row {n}: sample_id {sid!r} appears twice")
            seen.add(sid)
            split = str(rec.get("split") or "train")
            if split not in SPLITS:
                raise ValueError(f"row {n} ({sid}): split must be one of {SPLITS}, got {split!r}")
            try:
                label = int(rec["label"])
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"row {n} ({sid}): label must be an integer") from None
            if label < 0:
                raise ValueError(f"row {n} ({sid}): label must be >= 0")
            ids.append(sid)
            labels.append(label)
            splits.append(split)
            subjects.append(str(rec["subject_ref"]) if rec.get("subject_ref") else None)
            uris.append(str(rec["uri"]) if rec.get("uri") else None)
        return cls(tuple(ids), tuple(labels), tuple(splits), tuple(subjects), tuple(uris))

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class _Entry:
    path: str
    start: int = 0
    length: int = -1


@dataclass(frozen=True)
class SampleProblem:
    sample_id: str
    reason: str


@dataclass
class RowProblems:
    """Rows whose file could not be read or decoded, collected while a pass reads them: the
    first ``limit`` by sample id, and how many in all (``checked`` rows were looked at)."""

    limit: int = 100
    listed: list[SampleProblem] = field(default_factory=list)
    count: int = 0
    checked: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    """How many rows had each distinct reason (object addresses left out; at most 20
    distinct, the rest under "other")."""

    def add(self, sample_id: str, reason: str) -> None:
        self.count += 1
        if len(self.listed) < self.limit:
            self.listed.append(SampleProblem(sample_id, reason))
        general = _ADDRESS.sub("", reason)
        if general not in self.reasons and len(self.reasons) >= 20:
            general = "other"
        self.reasons[general] = self.reasons.get(general, 0) + 1


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


class UnreadableRows(ValueError):
    """A pass that checks its rows (``FeatureCache.features(..., problems=)``) found some it
    could not read or decode; nothing of that pass was kept."""

    def __init__(self, problems: RowProblems) -> None:
        self.problems = problems
        listed = "; ".join(f"{p.sample_id}: {p.reason}" for p in problems.listed)
        super().__init__(
            f"{problems.count} of {problems.checked} rows have no readable file "
            f"(first {len(problems.listed)}): {listed}"
        )


class ImageSource(TorchDataset[torch.Tensor]):
    """Row ``i`` -> the preprocessed image of ``ids[i]`` (a ``SampleSource`` for ``Split``)."""

    def __init__(
        self,
        location: Location,
        entries: Sequence[_Entry | None],
        ids: Sequence[str],
        preprocess: Preprocess,
        *,
        batch_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        self.location = location
        self.entries = list(entries)
        self.ids = list(ids)
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.num_workers = num_workers
        self._transform = preprocess.transform()
        recipe = repr(sorted(preprocess.to_dict().items()))
        self._salt = hashlib.sha256(recipe.encode()).hexdigest()
        self._peeked: dict[int, torch.Tensor] = {}
        self.shape: tuple[int, ...] | None = None
        """Every row's input shape, once ``peek`` has decoded one."""

    def peek(self, row: int) -> torch.Tensor:
        """Row ``row``'s input, kept so that the next ``self[row]`` (in this process or a
        DataLoader worker it starts) does not read the file again: how the dataset learns
        its input shape without a second read of that file."""
        if row not in self._peeked:
            self._peeked[row] = self._decode(row)
            self.shape = tuple(int(d) for d in self._peeked[row].shape)
        return self._peeked[row]

    def __len__(self) -> int:
        return len(self.entries)

    def _bytes(self, row: int) -> bytes:
        entry = self.entries[row]
        if entry is None:
            raise FileNotFoundError("no file for this sample in the location")
        return self.location.read(entry.path, entry.start, entry.length)

    def __getitem__(self, row: int) -> torch.Tensor:
        peeked = self._peeked.pop(row, None)
        if peeked is not None:
            return peeked
        return self._decode(row)

    def _decode(self, row: int) -> torch.Tensor:
        from PIL import Image

        with Image.open(io.BytesIO(self._bytes(row))) as image:
            image.load()
            out: torch.Tensor = self._transform(image)
        return out

    def load(self, rows: torch.Tensor) -> torch.Tensor:
        parts = [
            x for x in loader(self, rows, batch_size=self.batch_size, workers=self.num_workers)
        ]
        if not parts:
            return torch.empty(0)
        return torch.cat(parts)

    def fingerprints(self, rows: torch.Tensor) -> torch.Tensor:
        """Two float64 numbers per row from (preprocessing, file, byte range, sample id)."""
        out = np.empty((len(rows), 2), dtype=np.float64)
        for k, r in enumerate(rows.tolist()):
            e = self.entries[r]
            text = f"{self._salt}|{self.ids[r]}|{e.path if e else ''}|{e.start if e else 0}"
            digest = hashlib.sha256(text.encode()).digest()
            out[k] = np.frombuffer(digest[:16], dtype=np.uint64).astype(np.float64)
        return torch.from_numpy(out)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_transform"] = None  # rebuilt in the worker process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._transform = self.preprocess.transform()


def loader(
    dataset: TorchDataset[Any],
    rows: torch.Tensor | None = None,
    *,
    batch_size: int = 256,
    workers: int = 0,
    device: torch.device | None = None,
    collate_fn: Callable[[list[Any]], Any] | None = None,
) -> DataLoader[Any]:
    """Batches of ``dataset`` (optionally only ``rows``, in order): worker processes for
    decoding, pinned memory when the batches go to CUDA."""
    data: TorchDataset[Any] = (
        dataset if rows is None else Subset(dataset, [int(r) for r in rows.tolist()])
    )
    cuda = device is not None and device.type == "cuda"
    return DataLoader(
        data,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=cuda,
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        collate_fn=collate_fn,
    )


class _Checked(TorchDataset[tuple[torch.Tensor | None, str]]):
    """Row -> (input, "") or (None, why it cannot become an input)."""

    def __init__(self, source: ImageSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, row: int) -> tuple[torch.Tensor | None, str]:
        try:
            x = self.source[row]
        except Exception as exc:  # any reason a row cannot become an input is reported
            return None, f"{type(exc).__name__}: {exc}"[:300]
        want = self.source.shape
        if want is not None and tuple(x.shape) != want:
            return None, (
                f"WrongShape: decodes to {tuple(x.shape)} where the dataset's first row gives "
                f"{want} (declare resize and center_crop in preprocess)"
            )
        return x, ""


def _collate_checked(
    batch: list[tuple[torch.Tensor | None, str]],
) -> tuple[torch.Tensor | None, torch.Tensor, list[str]]:
    """(the readable inputs stacked, which rows of the batch they are, every row's reason);
    a readable input of another shape than the batch's first is a problem too."""
    shape: tuple[int, ...] | None = None
    xs: list[torch.Tensor] = []
    ok: list[bool] = []
    reasons: list[str] = []
    for x, why in batch:
        if x is not None:
            if shape is None:
                shape = tuple(x.shape)
            if tuple(x.shape) != shape:
                why = (
                    f"WrongShape: decodes to {tuple(x.shape)} where other rows give {shape} "
                    "(declare resize and center_crop in preprocess)"
                )
            else:
                xs.append(x)
        ok.append(not why)
        reasons.append(why)
    return (torch.stack(xs) if xs else None), torch.tensor(ok, dtype=torch.bool), reasons


def checked_loader(
    source: ImageSource,
    rows: torch.Tensor,
    *,
    batch_size: int = 256,
    workers: int = 0,
    device: torch.device | None = None,
) -> DataLoader[tuple[torch.Tensor | None, torch.Tensor, list[str]]]:
    """Like ``loader``, but a row whose file is missing or undecodable does not stop the
    pass: each batch is ``(inputs of the readable rows, ok mask, reasons)``."""
    return loader(
        _Checked(source),
        rows,
        batch_size=batch_size,
        workers=workers,
        device=device,
        collate_fn=_collate_checked,
    )


class _Probe(TorchDataset[str]):
    def __init__(self, source: ImageSource) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, row: int) -> str:
        try:
            self.source[row]
        except Exception as exc:  # any reason a row cannot become an input is reported
            return f"{type(exc).__name__}: {exc}"[:300]
        return ""


def find_problems(
    source: ImageSource,
    *,
    limit: int = 100,
    workers: int = 0,
    progress: Callable[[float], None] | None = None,
    rows: torch.Tensor | None = None,
    into: RowProblems | None = None,
) -> tuple[list[SampleProblem], int]:
    """Read and decode every row (or only ``rows``) once, keeping nothing; the first
    ``limit`` problems by sample id, and how many rows had one (added to ``into`` if
    given). ``progress(fraction)`` is called after each batch."""
    found = into if into is not None else RowProblems(limit)
    picked = list(range(len(source))) if rows is None else [int(r) for r in rows.tolist()]
    data = DataLoader(
        Subset(_Probe(source), picked),
        batch_size=64,
        num_workers=workers,
        collate_fn=list,
        shuffle=False,
    )
    at = 0
    for batch in data:
        for reason in batch:
            if reason:
                found.add(source.ids[picked[at]], reason)
            at += 1
        found.checked += len(batch)
        if progress is not None:
            progress(at / max(len(picked), 1))
    return found.listed, found.count


def _folder_index(location: Location) -> dict[str, str]:
    """sample id (file stem) -> relative path, for every image file of an ImageFolder tree."""
    index: dict[str, str] = {}
    for path in location.list():
        stem, ext = os.path.splitext(path.rsplit("/", 1)[-1])
        if ext.lower() in IMAGE_EXTENSIONS:
            index.setdefault(stem, path)
    return index


def _tar_index(location: Location) -> dict[str, _Entry]:
    """sample id -> (shard, offset, size) of its image member, from the shards' headers."""
    index: dict[str, _Entry] = {}
    for shard in (p for p in location.list() if p.endswith(".tar")):
        if isinstance(location, LocalLocation):  # headers only: tarfile seeks past the data
            with tarfile.open(location._path(shard), mode="r:") as tar:
                _index_members(tar, shard, index)
        else:
            with tarfile.open(fileobj=io.BytesIO(location.read(shard)), mode="r:") as tar:
                _index_members(tar, shard, index)
    return index


def _index_members(tar: tarfile.TarFile, shard: str, index: dict[str, _Entry]) -> None:
    for member in tar:
        if not member.isfile():
            continue
        name = member.name.rsplit("/", 1)[-1]
        key, _, ext = name.partition(".")
        if "." + ext.lower() in IMAGE_EXTENSIONS:
            index.setdefault(key, _Entry(shard, member.offset_data, member.size))


def _entries(rows: Rows, location: Location, layout: Layout) -> list[_Entry | None]:
    if layout == "webdataset":
        tar = _tar_index(location)
        return [tar.get(i) for i in rows.ids]
    folder = _folder_index(location) if layout == "image-folder" else {}
    out: list[_Entry | None] = []
    for sid, uri in zip(rows.ids, rows.uris, strict=True):
        if uri:
            out.append(_Entry(uri))
        elif layout == "image-folder" and sid in folder:
            out.append(_Entry(folder[sid]))
        else:
            out.append(None)
    return out


def reference_dataset(
    rows: Rows,
    location: Location,
    layout: Layout,
    preprocess: Preprocess,
    *,
    num_classes: int | None = None,
    batch_size: int = 256,
    num_workers: int = 0,
    dataset_id: str = "reference",
) -> Dataset:
    """A ``Dataset`` whose splits read ``location`` on demand (nothing is read here but the
    location's listing or shard headers, and the first row, for the input shape). Rows
    without a file read as errors, which ``find_problems`` and a checked warm-up
    (``FeatureCache.features(..., problems=)``) list."""
    if layout not in ("image-files", "image-folder", "webdataset"):
        raise ValueError(f"unknown layout {layout!r}")
    if layout == "image-files" and not all(rows.uris):
        missing = [i for i, u in zip(rows.ids, rows.uris, strict=True) if not u][:10]
        raise ValueError(f"layout image-files needs a uri on every row; missing for {missing}")
    source = ImageSource(
        location,
        _entries(rows, location, layout),
        rows.ids,
        preprocess,
        batch_size=batch_size,
        num_workers=num_workers,
    )
    labels = torch.tensor(rows.labels, dtype=torch.long)
    k = (
        num_classes
        if num_classes is not None
        else int(labels.max().item()) + 1
        if len(labels)
        else 0
    )

    def split(name: str) -> Split:
        idx = torch.tensor([i for i, s in enumerate(rows.splits) if s == name], dtype=torch.long)
        ids = tuple(rows.ids[i] for i in idx.tolist())
        subjects = tuple(rows.subjects[i] for i in idx.tolist()) if name == "train" else None
        return Split(None, labels[idx], ids, subjects, source=source, rows=idx)

    train, val, test = split("train"), split("val"), split("test")
    if len(val) == 0:
        raise ValueError("the manifest has no val rows: Lethe needs held-out samples")
    if len(test) == 0:
        test = val
    shape: tuple[int, ...] = ()
    try:  # the row is kept for its first read (ImageSource.peek): no file is read twice
        shape = tuple(int(d) for d in source.peek(0).shape) if len(source) else ()
    except Exception:
        shape = ()
    return Dataset(
        dataset_id,
        k,
        shape,
        train,
        val,
        test,
        {"layout": layout, "location": location.describe(), "preprocess": preprocess.to_dict()},
    )
