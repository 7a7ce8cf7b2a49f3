"""A registration reads every manifest row's file once (issue 12 point 4): the feature
warm-up is the one pass that reads, decodes and checks the data. Missing and undecodable
files are listed by sample id and reject the model with nothing of it left: no version, no
manifest rows, no feature table in the worker's cache or in the store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.registry.test_registration_job import my_resnet, register, state_dict_bytes
from tests.support.registration import run_jobs
from tests.support.service import create_key

torch = pytest.importorskip("torch")

N_TRAIN, N_VAL, N_TEST = 40, 100, 12


@pytest.fixture
def images(tmp_path: Path) -> Path:
    from unlearning.shapes import write_image_folder

    write_image_folder(tmp_path / "data" / "shapes", N_TRAIN, N_VAL, N_TEST)
    return tmp_path / "data"


@pytest.fixture
def api(seeded: Any, images: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from tests.support.requests import recording_app

    seeded.settings = seeded.settings.model_copy(
        update={"dataset_roots": str(images), "data_workers": 0}
    )
    app, _ = recording_app(seeded)
    with TestClient(app) as client:
        yield client


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Every read of a file of a folder location, by path (the worker runs in-process and
    its DataLoaders without worker processes, so all reads pass here)."""
    from unlearning import sources

    counted: Counter[str] = Counter()
    plain = sources.LocalLocation.read

    def read(self: Any, path: str, start: int = 0, length: int = -1) -> bytes:
        counted[path] += 1
        return plain(self, path, start, length)

    monkeypatch.setattr(sources.LocalLocation, "read", read)
    return counted


def feature_tables(rt: Any) -> tuple[list[Path], list[str]]:
    local = sorted(rt.settings.resolved_feature_cache_dir.glob("*.safetensors"))
    return local, rt.store.list_refs("features-")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_every_manifest_file_is_read_once_by_a_registration(
    api: Any, seeded: Any, images: Path, reads: Counter[str]
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    folder = images / "shapes"
    resp = register(
        api,
        admin,
        name="once",
        checkpoint=state_dict_bytes(my_resnet(), "pt"),
        manifest=(folder / "manifest.csv").read_bytes(),
        location=str(folder),
    )
    assert resp.status_code == 202, resp.text
    assert run_jobs(seeded, "once") == ["published"]
    model = api.get("/v1/models/once", headers=admin).json()
    assert model["status"] == "ready" and model["registration"]["progress"] == 100.0
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*.png")}
    assert set(reads) == on_disk  # every row's file was read ...
    assert set(reads.values()) == {1}  # ... exactly once
    local, shared = feature_tables(seeded)
    assert len(local) == 1 and len(shared) == 1  # and its activations were cached


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_missing_and_corrupt_files_reject_by_sample_id_and_leave_no_features(
    api: Any, seeded: Any, images: Path, reads: Counter[str]
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    folder = images / "shapes"
    manifest = (folder / "manifest.csv").read_bytes().decode().splitlines(keepends=True)
    ghosts = [f"ghost-{i:03d}" for i in range(120)]  # more than the 100 a rejection lists
    (folder / "disc" / "broken-1.png").write_bytes(b"\x89PNG but not really")
    (folder / "disc" / "broken-2.png").write_bytes(b"")
    extra = ["broken-1,0,train,,\n", "broken-2,0,train,,\n"] + [f"{g},0,train,,\n" for g in ghosts]
    resp = register(
        api,
        admin,
        name="holes",
        checkpoint=state_dict_bytes(my_resnet(), "pt"),
        manifest="".join(manifest + extra).encode(),
        location=str(folder),
    )
    assert resp.status_code == 202, resp.text
    assert run_jobs(seeded, "holes") == ["rejected"]
    model = api.get("/v1/models/holes", headers=admin).json()
    assert model["status"] == "rejected" and model["latest_version"] == 0
    assert model["training_samples"] == 0
    reason = model["status_reason"]
    total = N_TRAIN + N_VAL + N_TEST + len(extra)
    assert f"122 of {total} manifest rows have no readable file" in reason, reason
    assert "FileNotFoundError: no file for this sample in the location (120 rows)" in reason
    assert "UnidentifiedImageError: cannot identify image file" in reason
    assert "object> (2 rows)" in reason  # the two corrupt files, one reason
    assert "First 100: broken-1" in reason
    assert (
        "broken-1: UnidentifiedImageError" in reason
        and "broken-2: UnidentifiedImageError" in reason
    )
    assert "ghost-000: FileNotFoundError" in reason and "ghost-097: FileNotFoundError" in reason
    assert "ghost-098" not in reason  # beyond the first 100
    assert "shape-0000000" not in reason  # readable rows are not listed
    # nothing half-registered: no feature table written here or shared through the store
    assert feature_tables(seeded) == ([], [])
    # and the pass read each file that exists once
    assert set(reads.values()) == {1}
    assert "disc/broken-1.png" in reads and "disc/broken-2.png" in reads
