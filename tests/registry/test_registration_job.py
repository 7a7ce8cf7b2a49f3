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

from tests.support.registration import run_jobs, wait_for_model
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


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
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


# --- while validating, and what a worker rejects (jobs run by hand: no race) -------------


@pytest.fixture
def roots_api(seeded: Any, datasets: Path) -> Iterator[Any]:
    """The API alone (jobs are recorded, the test runs them); datasets under `datasets`."""
    from fastapi.testclient import TestClient

    from tests.support.requests import recording_app

    seeded.settings = seeded.settings.model_copy(update={"dataset_roots": str(datasets)})
    app, recorder = recording_app(seeded)
    with TestClient(app) as client:
        client.dispatched = recorder.sent
        yield client


def subject_request(client: Any, headers: dict[str, str], model: str) -> Any:
    body = erasure_body([], model=model)
    del body["sample_ids"]
    body["subject_identities"] = [{"identity_type": "user_id", "identity_value": SUBJECT}]
    return client.post("/v1/erasure-requests", json=body, headers=headers)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_erasure_posted_while_validating_waits_and_completes_after_ready(
    roots_api: Any, seeded: Any, datasets: Path
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    folder = datasets / "shapes"
    resp = register(
        roots_api,
        admin,
        name="waiting",
        checkpoint=state_dict_bytes(my_resnet(), "pt"),
        manifest=(folder / "manifest.csv").read_bytes(),
        location=str(folder),
    )
    assert resp.status_code == 202, resp.text
    registration_job = resp.json()["registration"]["job_id"]
    early = subject_request(roots_api, admin, "waiting")
    assert early.status_code == 202, early.text  # accepted while the model validates
    request_id = early.json()["id"]
    time.sleep(0.5)  # the scheduler loop runs after the submit's commit
    assert roots_api.dispatched == [registration_job]  # no erasure job before the model is ready
    got = roots_api.get(f"/v1/erasure-requests/{request_id}", headers=admin).json()
    assert got["status"] == "queued"

    assert run_jobs(seeded, "waiting") == ["published", "published"]  # registration, erasure
    done = roots_api.get(f"/v1/erasure-requests/{request_id}", headers=admin).json()
    assert done["status"] == "completed" and done["result_version"] == 2
    model = roots_api.get("/v1/models/waiting", headers=admin).json()
    assert model["status"] == "ready" and model["latest_version"] == 2
    types = [
        e["type"]
        for e in roots_api.get("/v1/audit?subject=model:waiting", headers=admin).json()["items"]
    ]
    assert "model.registration_accepted" in types and "model.ready" in types


def _rejected(client: Any, rt: Any, headers: dict[str, str], name: str) -> dict[str, Any]:
    assert run_jobs(rt, name) == ["rejected"]
    model: dict[str, Any] = client.get(f"/v1/models/{name}", headers=headers).json()
    assert model["status"] == "rejected" and model["latest_version"] == 0
    assert model["training_samples"] == 0  # nothing half-registered is left
    assert client.get(f"/v1/models/{name}/versions/1", headers=headers).status_code == 404
    return model


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_missing_and_undecodable_files_reject_the_model_by_sample_id(
    roots_api: Any, seeded: Any, datasets: Path
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    folder = datasets / "shapes"
    (folder / "disc" / "broken-1.png").write_bytes(b"these bytes are not a PNG")
    manifest = (folder / "manifest.csv").read_bytes() + b"ghost-1,0,train,,\nbroken-1,0,train,,\n"
    checkpoint = state_dict_bytes(my_resnet(), "pt")
    resp = register(
        roots_api,
        admin,
        name="holes",
        checkpoint=checkpoint,
        manifest=manifest,
        location=str(folder),
    )
    assert resp.status_code == 202, resp.text
    waiting = subject_request(roots_api, admin, "holes")
    assert waiting.status_code == 202

    model = _rejected(roots_api, seeded, admin, "holes")
    reason = model["status_reason"]
    assert "2 of 154 manifest rows" in reason, reason
    assert "ghost-1: FileNotFoundError" in reason and "broken-1: UnidentifiedImageError" in reason
    assert "shape-0000000" not in reason  # readable rows are not listed
    # the request that waited fails with the reason; a new one is refused with it (409)
    failed = roots_api.get(f"/v1/erasure-requests/{waiting.json()['id']}", headers=admin).json()
    assert failed["status"] == "failed" and "ghost-1" in failed["status_reason"]
    refused = subject_request(roots_api, admin, "holes")
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("/model-rejected")
    assert "ghost-1" in refused.json()["reason"]
    # its uploads are gone from the store
    import hashlib

    assert not seeded.store.has_blob(hashlib.sha256(checkpoint).hexdigest())
    events = roots_api.get("/v1/audit?subject=model:holes", headers=admin).json()["items"]
    assert [e["type"] for e in events][-1] == "model.rejected"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_mismatched_checkpoint_and_a_pickled_module_are_rejected(
    roots_api: Any, seeded: Any, datasets: Path
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    folder = datasets / "shapes"
    manifest = (folder / "manifest.csv").read_bytes()
    tensors = my_resnet(num_classes=7).state_dict()  # a head for 7 classes, the data has 10
    del tensors["layer1.0.conv1.weight"]
    tensors["extra.weight"] = torch.zeros(3)
    out = io.BytesIO()
    torch.save(tensors, out)
    resp = register(
        roots_api,
        admin,
        name="mismatch",
        checkpoint=out.getvalue(),
        manifest=manifest,
        location=str(folder),
    )
    assert resp.status_code == 202, resp.text
    reason = _rejected(roots_api, seeded, admin, "mismatch")["status_reason"]
    assert "missing tensors ['layer1.0.conv1.weight']" in reason, reason
    assert "unexpected tensors ['extra.weight']" in reason
    assert "fc.weight: (7, 512)" in reason and "expected (10, 512)" in reason

    module = io.BytesIO()
    torch.save(my_resnet(), module)  # the whole module pickled, not its state dict
    resp = register(
        roots_api,
        admin,
        name="pickled",
        checkpoint=module.getvalue(),
        manifest=manifest,
        location=str(folder),
    )
    assert resp.status_code == 202, resp.text
    reason = _rejected(roots_api, seeded, admin, "pickled")["status_reason"]
    assert "never unpickles" in reason and "torch.save(model.state_dict()" in reason, reason


# --- what the API refuses at once (422, nothing stored) ----------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_manifests_locations_and_headers_are_refused_at_once(
    roots_api: Any, seeded: Any, datasets: Path, tmp_path: Path
) -> None:
    from sqlalchemy import select

    from app.core.db import session_scope
    from app.registry.models import Model

    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    folder = datasets / "shapes"
    good = (folder / "manifest.csv").read_bytes()
    checkpoint = state_dict_bytes(my_resnet(), "pt")
    blobs_before = set(seeded.store.backend.blob_digests())

    def post(**kw: Any) -> Any:
        args: dict[str, Any] = {
            "name": "refused",
            "checkpoint": checkpoint,
            "manifest": good,
            "location": str(folder),
            **kw,
        }
        return register(roots_api, admin, **args)

    bad_lines = good + b"shape-0000000,1,train,,\nodd,x,train,,\nlate,2,holdout,,\n"
    resp = post(manifest=bad_lines)
    assert resp.status_code == 422, resp.text
    details = [e["detail"] for e in resp.json()["errors"]]
    assert details == [
        f"line {N_TRAIN + N_VAL + N_TEST + 2}: sample_id 'shape-0000000' appears twice",
        f"line {N_TRAIN + N_VAL + N_TEST + 3} (odd): label must be an integer >= 0",
        f"line {N_TRAIN + N_VAL + N_TEST + 4} (late): split must be one of "
        "['train', 'val', 'test']",
    ]
    # all but 99 val rows moved to train: one short of the held-out minimum
    lines = good.splitlines(keepends=True)
    val_rows = [i for i, line in enumerate(lines) if b",val," in line]
    assert len(val_rows) == N_VAL
    few_val = b"".join(
        line.replace(b",val,", b",train,") if i == val_rows[0] else line
        for i, line in enumerate(lines)
    )
    resp = post(manifest=few_val)
    assert resp.status_code == 422, resp.text
    assert "has 99 samples; at least 100 are needed" in resp.json()["detail"], resp.text
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (datasets / "escape").unlink(missing_ok=True)
    (datasets / "escape").symlink_to(outside)  # a link out of the root is followed, refused
    for location in ("/etc", "relative/path", str(datasets / "escape"), "http://example.org/x"):
        resp = post(location=location)
        assert resp.status_code == 422, (location, resp.text)
        assert resp.json()["errors"][0]["pointer"] == "/location", location
    resp = post(layout="zip")
    assert resp.status_code == 422
    resp = post(preprocess='{"sharpen": 2}')
    assert resp.status_code == 422 and "sharpen" in resp.json()["detail"]
    resp = post(checkpoint=b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")  # bad safetensors
    assert resp.status_code == 422 and resp.json()["type"].endswith("/invalid-checkpoint")
    with session_scope(seeded.session_factory, None) as s:
        assert s.scalar(select(Model.id).where(Model.name == "refused")) is None
    assert roots_api.dispatched == []
    assert set(seeded.store.backend.blob_digests()) == blobs_before  # nothing stored


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_pt_checkpoint_with_an_npz_training_set_is_a_job_too(roots_api: Any, seeded: Any) -> None:
    import hashlib

    from safetensors.torch import load

    from tests.registry.test_own_torchvision_model import _shapes_npz

    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    checkpoint = state_dict_bytes(my_resnet(), "pt")
    resp = roots_api.post(
        "/v1/models",
        data={"name": "pt-npz", "architecture": "torchvision:resnet18"},
        files={"checkpoint": ("m.pt", checkpoint), "training_set": ("t.npz", _shapes_npz())},
        headers=admin,
    )
    assert resp.status_code == 202 and resp.json()["status"] == "validating", resp.text
    assert run_jobs(seeded, "pt-npz") == ["published"]
    v1 = roots_api.get("/v1/models/pt-npz/versions/1", headers=admin).json()
    assert 0 <= v1["metrics"]["TA"] <= 100
    got = roots_api.get("/v1/models/pt-npz/versions/1/checkpoint", headers=admin)
    torchvision.models.resnet18(num_classes=10).load_state_dict(load(got.content), strict=True)
    # the upload as sent is not kept (the store holds the checkpoint in its own layout)
    assert not seeded.store.has_blob(hashlib.sha256(checkpoint).hexdigest())
