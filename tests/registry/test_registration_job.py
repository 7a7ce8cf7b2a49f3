"""Registration as a job (issue 12): a user's torchvision ResNet-18 and a generated image set
that stays in its folder (ImageFolder of PNGs, or WebDataset shards) are registered through
the API, which answers 202 `validating`; a worker checks the checkpoint and every row's file,
warms the features, measures version 1 and publishes it (`ready`), or rejects the model with
the reason. Then a data subject is erased and the new version loads into unmodified
torchvision. The S3 + PostgreSQL + Celery variant is in test_registration_job_s3.py."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.requests import erasure_body, wait_for_status
from tests.support.service import create_key

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

N_TRAIN, N_VAL, N_TEST = 40, 100, 12  # the smallest held-out split Lethe accepts is 100
SUBJECT = "subject-000002"  # the shapes set gives 5 train samples to each subject


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dataset root holding the set as an ImageFolder and as WebDataset shards."""
    from unlearning.shapes import write_image_folder, write_webdataset

    root = tmp_path_factory.mktemp("datasets")
    write_image_folder(root / "shapes", N_TRAIN, N_VAL, N_TEST)
    write_webdataset(root / "shards", N_TRAIN, N_VAL, N_TEST, shard_size=64)
    return root


def state_dict_bytes(model: Any, fmt: str) -> bytes:
    if fmt == "pt":
        out = io.BytesIO()
        torch.save(model.state_dict(), out)
        return out.getvalue()
    from safetensors.torch import save

    return save(model.state_dict())


def my_resnet(num_classes: int = 10) -> Any:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=num_classes)  # random init: the user's own


def register(
    client: Any,
    headers: dict[str, str],
    *,
    name: str,
    checkpoint: bytes,
    manifest: bytes,
    location: str,
    layout: str = "image-folder",
    preprocess: str = '{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}',
) -> Any:
    return client.post(
        "/v1/models",
        data={
            "name": name,
            "architecture": "torchvision:resnet18",
            "location": location,
            "layout": layout,
            "preprocess": preprocess,
        },
        files={"checkpoint": ("model.bin", checkpoint), "manifest": ("manifest.csv", manifest)},
        headers=headers,
    )


def wait_for_model(
    client: Any, name: str, headers: dict[str, str], timeout: float = 240
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/v1/models/{name}", headers=headers).json()
        if body["status"] != "validating":
            return body
        time.sleep(0.25)
    raise AssertionError(f"model {name} still validating after {timeout}s: {body}")


@pytest.fixture
def roots_client(seeded: Any, datasets: Path) -> Iterator[Any]:
    """The API with the embedded worker; datasets may live under `datasets`."""
    from fastapi.testclient import TestClient

    from lethe.asgi import build_app

    seeded.settings = seeded.settings.model_copy(update={"dataset_roots": str(datasets)})
    with TestClient(build_app(seeded.settings)) as client:
        yield client


def erase_subject_and_download(client: Any, admin: dict[str, str], name: str) -> bytes:
    body = erasure_body([], model=name)
    del body["sample_ids"]
    body["subject_identities"] = [{"identity_type": "user_id", "identity_value": SUBJECT}]
    created = client.post("/v1/erasure-requests", json=body, headers=admin)
    assert created.status_code == 202, created.text
    assert created.json()["sample_count"] == 5
    done = wait_for_status(client, created.json()["id"], admin, timeout=300)
    assert done["result_version"] == 2
    got = client.get(f"/v1/models/{name}/versions/2/checkpoint", headers=admin)
    assert got.status_code == 200
    return bytes(got.content)


@pytest.mark.parametrize(
    ("layout", "folder", "fmt"),
    [("image-folder", "shapes", "pt"), ("webdataset", "shards", "safetensors")],
)
def test_register_by_reference_then_erase_and_load_into_torchvision(
    roots_client: Any, seeded: Any, datasets: Path, layout: str, folder: str, fmt: str
) -> None:
    from safetensors.torch import load

    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    mine = my_resnet()
    resp = register(
        roots_client,
        admin,
        name="my-resnet",
        checkpoint=state_dict_bytes(mine, fmt),
        manifest=(datasets / folder / "manifest.csv").read_bytes(),
        location=str(datasets / folder),
        layout=layout,
    )
    assert resp.status_code == 202, resp.text
    accepted = resp.json()
    assert accepted["status"] == "validating" and accepted["latest_version"] == 0
    assert accepted["training_samples"] == N_TRAIN and accepted["num_classes"] == 10
    assert accepted["registration"]["job_id"]

    ready = wait_for_model(roots_client, "my-resnet", admin)
    assert ready["status"] == "ready", ready
    assert ready["latest_version"] == 1 and ready["status_reason"] is None
    assert ready["registration"]["phase"] == "ready"
    assert ready["registration"]["progress"] == 100.0
    v1 = roots_client.get("/v1/models/my-resnet/versions/1", headers=admin).json()
    for metric in ("RA", "TA", "VA"):  # measured by the registration job, not {}
        assert 0 <= v1["metrics"][metric] <= 100
    assert v1["metrics"]["train_count"] == N_TRAIN
    job = roots_client.get(f"/v1/jobs/{ready['registration']['job_id']}", headers=admin).json()
    assert job["kind"] == "register" and job["status"] == "succeeded"

    v1_file = roots_client.get("/v1/models/my-resnet/versions/1/checkpoint", headers=admin)
    # the user's exact tensors, as uploaded (a .pt is converted to safetensors)
    assert {k: v.dtype for k, v in load(v1_file.content).items()} == {
        k: v.dtype for k, v in mine.state_dict().items()
    }
    assert torch.equal(load(v1_file.content)["fc.weight"], mine.state_dict()["fc.weight"])

    v2 = erase_subject_and_download(roots_client, admin, "my-resnet")
    plain = torchvision.models.resnet18(num_classes=10)
    plain.load_state_dict(load(v2), strict=True)  # unmodified torchvision
    erased = roots_client.get("/v1/models/my-resnet/versions/2", headers=admin).json()
    assert len(erased["erased_sample_ids"]) == 5
