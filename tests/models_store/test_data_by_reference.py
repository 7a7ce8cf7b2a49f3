"""Datasets by reference on the store side: the torch-free manifest reader, an S3 prefix as
a dataset location, and feature tables shared by workers through the store (filesystem and
the S3 server)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models_store.dataset_manifest import ManifestError, read_manifest
from models_store.features import StoreFeatureRemote
from models_store.locations import S3Location
from tests.models_store.store_harness import CREDENTIALS, REGION, Harness


def test_csv_and_json_lines_manifests_read_the_same() -> None:
    csv_text = b"sample_id,label,split,subject_ref,uri\na,0,train,s1,x/a.png\nb,2,val,,\n"
    jsonl = b'{"sample_id": "a", "label": 0, "subject_ref": "s1", "uri": "x/a.png"}\n' + (
        b'{"sample_id": "b", "label": 2, "split": "val"}\n'
    )
    a, b = read_manifest(csv_text), read_manifest(jsonl)
    assert a.rows == b.rows
    assert a.splits == {"train": 1, "val": 1, "test": 0} and a.num_classes == 3


def test_manifest_problems_are_listed_by_line() -> None:
    bad = b"sample_id,label,split\na,0,train\na,1,train\nb,cat,val\nc,1,dev\n,1,val\n"
    with pytest.raises(ManifestError) as info:
        read_manifest(bad)
    assert info.value.problems == [
        "line 3: sample_id 'a' appears twice",
        "line 4 (b): label must be an integer >= 0",
        "line 5 (c): split must be one of ['train', 'val', 'test']",
        "line 6: sample_id is empty",
    ]
    with pytest.raises(ManifestError, match="no val rows"):
        read_manifest(b"sample_id,label\na,0\n")
    with pytest.raises(ManifestError, match="lacks"):
        read_manifest(b"id,class\na,0\n")


def test_feature_tables_are_shared_through_the_store(harness: Harness, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import unlearning as ul

    torch.manual_seed(0)
    model = ul.get_architecture("digits-cnn", num_classes=10).eval()
    split = ul.Split(torch.rand(20, 1, 8, 8), torch.arange(20) % 10, tuple(map(str, range(20))))
    remote = StoreFeatureRemote(harness.store)
    a = ul.FeatureCache(tmp_path / "a", remote=remote)
    (z_a,) = a.features(model, split)
    b = ul.FeatureCache(tmp_path / "b", remote=remote)  # another worker, empty local copy
    (z_b,) = b.features(model, split)
    assert a.computed == 20 and b.computed == 0
    assert torch.equal(z_a, z_b)
    assert list((tmp_path / "b").glob("*.safetensors"))  # the read-through copy


def test_an_s3_prefix_is_a_dataset_location(
    s3_endpoint: str, s3_client: Any, s3_bucket: str, tmp_path: Path
) -> None:
    torch = pytest.importorskip("torch")
    from unlearning import shapes, sources
    from unlearning.preprocess import Preprocess

    rows = shapes.write_image_folder(tmp_path / "img", 8, 4, 0, seed=1)
    for path in (tmp_path / "img").rglob("*.png"):
        key = f"datasets/shapes/{path.relative_to(tmp_path / 'img').as_posix()}"
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=path.read_bytes())
    location = S3Location(
        s3_bucket,
        "datasets/shapes",
        endpoint_url=s3_endpoint,
        region=REGION,
        access_key_id=CREDENTIALS["aws_access_key_id"],
        secret_access_key=CREDENTIALS["aws_secret_access_key"],
    )
    manifest = sources.Rows.from_records(json.loads(json.dumps(rows)))
    pre = Preprocess()
    remote = sources.reference_dataset(manifest, location, "image-folder", pre, num_classes=10)
    local = sources.reference_dataset(
        manifest, sources.LocalLocation(tmp_path / "img"), "image-folder", pre, num_classes=10
    )
    assert torch.equal(remote.val.x, local.val.x)
    assert len(location.list()) == 12
    with pytest.raises(ValueError, match="below the dataset location"):
        location.read("../other/secret.png")
