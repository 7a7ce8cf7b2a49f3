"""`head_module` through the API (issue 12 point 1): a torchvision ResNet-18 registered with
its logits layer named (`fc`) is checked, erased and downloaded in a form unmodified
torchvision loads strictly; for a MobileNetV3 (whose head is `classifier.3`) a head that is
not a submodule, or not an nn.Linear producing the logits, rejects the model with the
reason; a head_module that is no module path, or one given for a non-torchvision
architecture, is 422 and stores nothing.

(The round trip uses ResNet-18: a random-init MobileNetV3 on 32x32 images predicts one
class for everything, so an erasure has nothing to change and is refused as a no-op.)"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.registry.test_registration_job import (
    erase_subject_and_download,
    my_resnet,
    state_dict_bytes,
)
from tests.support.registration import run_jobs, wait_for_model
from tests.support.service import create_key

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

ARCH = "torchvision:mobilenet_v3_small"
PREPROCESS = '{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}'


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from unlearning.shapes import write_image_folder

    root = tmp_path_factory.mktemp("head-datasets")
    write_image_folder(root / "shapes", 40, 100, 12)
    return root


def my_mobilenet() -> Any:
    torch.manual_seed(0)
    return torchvision.models.mobilenet_v3_small(num_classes=10)


def post(client: Any, headers: dict[str, str], images: Path, **data: Any) -> Any:
    folder = images / "shapes"
    checkpoint = data.pop("checkpoint", None) or state_dict_bytes(my_mobilenet(), "safetensors")
    return client.post(
        "/v1/models",
        data={
            "architecture": ARCH,
            "location": str(folder),
            "layout": "image-folder",
            "preprocess": PREPROCESS,
            **data,
        },
        files={
            "checkpoint": ("model.safetensors", checkpoint),
            "manifest": ("manifest.csv", (folder / "manifest.csv").read_bytes()),
        },
        headers=headers,
    )


def _client(seeded: Any, images: Path, embedded: bool) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from lethe.asgi import build_app
    from tests.support.requests import recording_app

    seeded.settings = seeded.settings.model_copy(update={"dataset_roots": str(images)})
    if embedded:
        with TestClient(build_app(seeded.settings)) as client:
            yield client
        return
    app, recorder = recording_app(seeded)
    with TestClient(app) as client:
        client.dispatched = recorder.sent
        yield client


@pytest.fixture
def embedded(seeded: Any, images: Path) -> Iterator[Any]:
    yield from _client(seeded, images, embedded=True)


@pytest.fixture
def api(seeded: Any, images: Path) -> Iterator[Any]:
    yield from _client(seeded, images, embedded=False)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_named_head_registers_erases_and_loads_into_unmodified_torchvision(
    embedded: Any, seeded: Any, images: Path
) -> None:
    from safetensors.torch import load

    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    resp = post(
        embedded,
        admin,
        images,
        name="my-resnet",
        architecture="torchvision:resnet18",
        head_module="fc",
        checkpoint=state_dict_bytes(my_resnet(), "pt"),
    )
    assert resp.status_code == 202, resp.text
    ready = wait_for_model(embedded, "my-resnet", admin)
    assert ready["status"] == "ready", ready
    assert ready["head_module"] == "fc"  # what was named is shown with the model
    v1 = embedded.get("/v1/models/my-resnet/versions/1/checkpoint", headers=admin).content

    v2 = erase_subject_and_download(embedded, admin, "my-resnet")  # retires v1
    plain = torchvision.models.resnet18(num_classes=10)
    plain.load_state_dict(load(v2), strict=True)  # unmodified torchvision
    before, after = load(v1), load(v2)
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    # the erasure trained the named head (and at most the block below), not the stem
    assert "fc.weight" in changed and "conv1.weight" not in changed, changed


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("head", "why"),
    [
        ("classifier.0", "'classifier.0' is an nn.Linear with 1024 outputs, not the model's 10"),
        ("classifier.1", "'classifier.1' is a Hardswish, not an nn.Linear"),
        ("classifier.7", "'classifier.7' is not a submodule of the model"),
    ],
)
def test_a_wrong_head_module_rejects_the_model_with_the_reason(
    api: Any, seeded: Any, images: Path, head: str, why: str
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    resp = post(api, admin, images, name="wrong-head", head_module=head)
    assert resp.status_code == 202, resp.text
    assert run_jobs(seeded, "wrong-head") == ["rejected"]
    model = api.get("/v1/models/wrong-head", headers=admin).json()
    assert model["status"] == "rejected" and model["latest_version"] == 0
    assert why in model["status_reason"], model["status_reason"]
    assert f"head_module {head!r}" in model["status_reason"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_head_module_that_is_no_module_path_is_refused_at_once(
    api: Any, seeded: Any, images: Path
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    blobs_before = set(seeded.store.backend.blob_digests())
    for bad in ("classifier..3", "classifier[3]", "fc\n", ".fc", "x" * 300):
        resp = post(api, admin, images, name="refused", head_module=bad)
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["errors"][0]["pointer"].endswith("/head_module"), bad
    resp = post(api, admin, images, name="refused", architecture="digits-cnn", head_module="head")
    assert resp.status_code == 422, resp.text
    assert "torchvision:" in resp.json()["detail"]
    assert api.get("/v1/models/refused", headers=admin).status_code == 404
    assert api.dispatched == []
    assert set(seeded.store.backend.blob_digests()) == blobs_before  # nothing stored
