"""Datasets by reference: generated PNGs in an ImageFolder tree and in WebDataset shards,
declared preprocessing, problems listed by sample id, features streamed and shared, and an
erasure that reads no retained sample."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

import unlearning as ul
from unlearning import shapes, sources
from unlearning.preprocess import Preprocess

PRE = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    shapes.write_image_folder(root / "img", 60, 12, 12, seed=0)
    shapes.write_webdataset(root / "wds", 60, 12, 12, seed=0, shard_size=25)
    return root


def _rows(path: Path) -> sources.Rows:
    with open(path, newline="") as f:
        return sources.Rows.from_records(csv.DictReader(f))


class CountingLocation(sources.LocalLocation):
    """Records which files are read (in this process: tests run loaders without workers)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.reads: list[str] = []

    def read(self, path: str, start: int = 0, length: int = -1) -> bytes:
        self.reads.append(path)
        return super().read(path, start, length)


def test_the_generated_set_is_deterministic_and_prefix_stable() -> None:
    a, la = shapes.render(17, seed=3)
    b, lb = shapes.render(17, seed=3)
    assert la == lb and a.tobytes() == b.tobytes() and a.size == (32, 32)
    labels = [shapes.render(i, seed=3)[1] for i in range(200)]
    assert len(set(labels)) == len(shapes.CLASSES)  # every class occurs


def test_image_folder_and_webdataset_give_the_same_inputs(folder: Path) -> None:
    rows = _rows(folder / "img" / "manifest.csv")
    assert len(rows) == 84 and rows.splits.count("val") == 12
    img = sources.reference_dataset(
        rows, sources.LocalLocation(folder / "img"), "image-folder", PRE, num_classes=10
    )
    wds = sources.reference_dataset(
        _rows(folder / "wds" / "manifest.csv"),
        sources.LocalLocation(folder / "wds"),
        "webdataset",
        PRE,
        num_classes=10,
    )
    assert img.input_shape == (3, 32, 32)
    assert (len(img.train), len(img.val), len(img.test)) == (60, 12, 12)
    assert torch.equal(img.val.x, wds.val.x)
    assert img.params["preprocess"]["mean"] == [0.5, 0.5, 0.5]


def test_the_shards_are_readable_by_the_webdataset_library(folder: Path) -> None:
    webdataset = pytest.importorskip("webdataset")
    shard = str(folder / "wds" / "shard-000000.tar")
    first = next(iter(webdataset.WebDataset(shard, shardshuffle=False)))
    assert first["__key__"] == "shape-0000000" and first["png"][:4] == b"\x89PNG"


def test_missing_and_undecodable_files_are_listed_by_sample_id(
    folder: Path, tmp_path: Path
) -> None:
    rows = _rows(folder / "img" / "manifest.csv")
    broken = tmp_path / "uri"
    records = [
        {
            "sample_id": sid,
            "label": label,
            "split": split,
            "uri": f"{shapes.CLASSES[label]}/{sid}.png",
        }
        for sid, label, split in zip(rows.ids, rows.labels, rows.splits, strict=True)
    ]
    for rec in records:
        target = broken / rec["uri"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((folder / "img" / rec["uri"]).read_bytes())
    (broken / records[5]["uri"]).unlink()
    (broken / records[9]["uri"]).write_bytes(b"not a png")
    ds = sources.reference_dataset(
        sources.Rows.from_records(records),
        sources.LocalLocation(broken),
        "image-files",
        PRE,
        num_classes=10,
    )
    assert ds.train.source is not None
    problems, count = sources.find_problems(ds.train.source)  # type: ignore[arg-type]
    assert count == 2
    assert [p.sample_id for p in problems] == [records[5]["sample_id"], records[9]["sample_id"]]
    assert "FileNotFoundError" in problems[0].reason


def test_a_manifest_row_must_be_complete() -> None:
    with pytest.raises(ValueError, match="appears twice"):
        sources.Rows.from_records([{"sample_id": "a", "label": 1}] * 2)
    with pytest.raises(ValueError, match="label must be an integer"):
        sources.Rows.from_records([{"sample_id": "a", "label": "cat"}])
    with pytest.raises(ValueError, match="split must be one of"):
        sources.Rows.from_records([{"sample_id": "a", "label": 1, "split": "dev"}])


def test_a_weights_preset_is_written_out() -> None:
    pre = Preprocess.from_preset("ResNet18_Weights.IMAGENET1K_V1")
    assert (pre.resize, pre.center_crop) == (256, 224)
    assert pre.mean == pytest.approx((0.485, 0.456, 0.406))
    assert Preprocess.from_dict(pre.to_dict()) == pre
    assert Preprocess.from_dict({"preset": "ResNet18_Weights.IMAGENET1K_V1"}) == pre
    with pytest.raises(ValueError, match="unknown preprocessing fields"):
        Preprocess.from_dict({"resize": 32, "rotate": 5})


class DictRemote:
    """A shared feature store in memory (the service uses the model store)."""

    def __init__(self) -> None:
        self.tables: dict[str, bytes] = {}

    def download(self, key: str, dest: Path) -> bool:
        if key not in self.tables:
            return False
        dest.write_bytes(self.tables[key])
        return True

    def upload(self, key: str, src: Path) -> None:
        self.tables[key] = src.read_bytes()


def test_features_are_shared_and_an_erasure_reads_no_retained_sample(
    folder: Path, tmp_path: Path
) -> None:
    location = CountingLocation(folder / "img")
    ds = sources.reference_dataset(
        _rows(folder / "img" / "manifest.csv"), location, "image-folder", PRE, num_classes=10
    )
    assert len(location.reads) == 1  # building the dataset read one file for the input shape
    torch.manual_seed(0)
    model = ul.get_architecture("torchvision:resnet18", num_classes=10).eval()
    remote = DictRemote()
    first = ul.FeatureCache(tmp_path / "worker-a", remote=remote, batch_size=16)
    z_train, *_ = first.features(model, ds.train, ds.val, ds.test)
    assert first.computed == 84 and len(remote.tables) == 1
    assert len(set(location.reads)) == len(location.reads)  # no file read twice
    assert len(location.reads) == 84  # the one read for the shape included

    location.reads.clear()
    other = ul.FeatureCache(tmp_path / "worker-b", remote=remote)  # another machine
    forget = list(ds.train.ids[:6])
    data = ds.unlearn_data(forget)
    result = ul.unlearn(model, data, "lau", {"epochs": 2}, cache=other)
    assert other.computed == 0
    assert location.reads == []  # no image file read: forget features are cached too
    (z_again,) = other.features(result.model, ds.train)
    assert torch.allclose(z_again, z_train)  # the head changed, the backbone's table did not


def _holes(folder: Path, tmp_path: Path) -> tuple[CountingLocation, sources.Rows, list[str]]:
    """A copy of the ImageFolder with one training file missing, one val file that is not
    an image and one test file that decodes to another size; those rows' sample ids."""
    from PIL import Image

    rows = _rows(folder / "img" / "manifest.csv")
    root = tmp_path / "holes"
    for path in (folder / "img").rglob("*.png"):
        target = root / path.relative_to(folder / "img")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    by_split = {
        s: [i for i, sp in zip(rows.ids, rows.splits, strict=True) if sp == s]
        for s in ("train", "val", "test")
    }
    missing, corrupt, odd = by_split["train"][7], by_split["val"][3], by_split["test"][5]
    next(root.rglob(f"{missing}.png")).unlink()
    next(root.rglob(f"{corrupt}.png")).write_bytes(b"not a png at all")
    Image.new("RGB", (20, 20)).save(next(root.rglob(f"{odd}.png")))
    return CountingLocation(root), rows, [missing, corrupt, odd]


def test_a_checked_warm_up_reads_each_file_once_and_keeps_nothing_when_rows_are_bad(
    folder: Path, tmp_path: Path
) -> None:
    location, rows, bad = _holes(folder, tmp_path)
    ds = sources.reference_dataset(rows, location, "image-folder", PRE, num_classes=10)
    torch.manual_seed(0)
    model = ul.get_architecture("torchvision:resnet18", num_classes=10).eval()
    remote = DictRemote()
    cache = ul.FeatureCache(tmp_path / "features", remote=remote, batch_size=16)
    problems = sources.RowProblems(limit=2)
    with pytest.raises(sources.UnreadableRows) as raised:
        cache.features(model, ds.train, ds.val, ds.test, problems=problems)
    assert problems.count == 3 and problems.checked == len(rows)
    assert [p.sample_id for p in problems.listed] == bad[:2]  # the first `limit`, in order
    assert "FileNotFoundError" in problems.listed[0].reason
    assert "UnidentifiedImageError" in problems.listed[1].reason
    assert "3 of 84 rows" in str(raised.value)
    # the one pass read every file there is exactly once (the shape probe's included)
    assert len(location.reads) == len(set(location.reads)) == len(rows) - 1
    # nothing of the pass was kept: no table here, none shared, nothing in memory
    assert list((tmp_path / "features").glob("*.safetensors")) == []
    assert remote.tables == {} and cache.computed == 0
    every = sources.RowProblems()
    with pytest.raises(sources.UnreadableRows):
        cache.features(model, ds.test, problems=every)
    assert [p.sample_id for p in every.listed] == [bad[2]]
    assert "decodes to (3, 20, 20)" in every.listed[0].reason


def test_a_checked_warm_up_over_cached_rows_still_reads_each_file_once(
    folder: Path, tmp_path: Path
) -> None:
    location = CountingLocation(folder / "img")
    ds = sources.reference_dataset(
        _rows(folder / "img" / "manifest.csv"), location, "image-folder", PRE, num_classes=10
    )
    torch.manual_seed(0)
    model = ul.get_architecture("torchvision:resnet18", num_classes=10).eval()
    remote = DictRemote()
    ul.FeatureCache(tmp_path / "a", remote=remote).features(model, ds.train, ds.val, ds.test)
    location.reads.clear()
    # a second registration of the same backbone finds the table: no activation computed,
    # but every row is still read and decoded once, so a file gone since is found
    again = ul.FeatureCache(tmp_path / "b", remote=remote)
    problems = sources.RowProblems()
    z = again.features(model, ds.train, ds.val, ds.test, problems=problems)
    assert again.computed == 0 and problems.count == 0 and problems.checked == 84
    assert sorted(location.reads) == sorted(set(location.reads)) and len(location.reads) == 84
    assert [len(t) for t in z] == [len(ds.train), len(ds.val), len(ds.test)]
    # a split given twice (a manifest without test rows tests on val) is read once
    location.reads.clear()
    twice = sources.RowProblems()
    z = again.features(model, ds.val, ds.val, problems=twice)
    assert twice.checked == len(ds.val) == len(location.reads) == len(set(location.reads))
    assert torch.equal(z[0], z[1])
    fresh = ul.FeatureCache()  # and computed once
    fresh.features(model, ds.val, ds.val)
    assert fresh.computed == len(ds.val)
