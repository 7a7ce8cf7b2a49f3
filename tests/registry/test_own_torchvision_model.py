"""A user's own torchvision ResNet-18, as README "Your own model" walks through it: the
user's plain state dict (no Lethe metadata) and a generated image set are registered,
a data subject is erased, and the new version loads into unmodified torchvision; on SQLite
and PostgreSQL with the embedded worker, and through a Celery worker with the S3 store."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest

from tests.models_store.conftest import s3_bucket, s3_client, s3_endpoint  # noqa: F401
from tests.models_store.store_harness import CREDENTIALS, REGION
from tests.support.registration import until_ready
from tests.support.requests import erasure_body, wait_for_status
from tests.support.service import create_key

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def _shapes_npz() -> bytes:
    import unlearning as ul

    # the smallest held-out split registration accepts (ul.MIN_VAL)
    ds = ul.load_dataset("shapes", seed=0, n=40, n_val=ul.MIN_VAL, n_test=12)
    arrays = {
        "x": ds.train.x.numpy(),
        "y": ds.train.y.numpy(),
        "ids": np.array(list(ds.train.ids)),
        "subjects": np.array([f"person{i // 4}@example.org" for i in range(len(ds.train))]),
        "x_val": ds.val.x.numpy(),
        "y_val": ds.val.y.numpy(),
        "ids_val": np.array(list(ds.val.ids)),
        "x_test": ds.test.x.numpy(),
        "y_test": ds.test.y.numpy(),
        "ids_test": np.array(list(ds.test.ids)),
    }
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def test_a_torchvision_resnet18_round_trip(embedded_client: Any, seeded: Any) -> None:
    _round_trip(embedded_client, seeded)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_the_same_through_celery_postgres_and_the_s3_server(
    distributed: Any, request: pytest.FixtureRequest
) -> None:
    from pydantic import SecretStr

    endpoint = request.getfixturevalue("s3_endpoint")  # the moto server of tests/models_store
    s3 = request.getfixturevalue("s3_client")
    bucket = request.getfixturevalue("s3_bucket")
    distributed.configure(
        store_url=f"s3://{bucket}/models",
        s3_endpoint_url=endpoint,
        s3_region=REGION,
        s3_access_key_id=CREDENTIALS["aws_access_key_id"],
        s3_secret_access_key=SecretStr(CREDENTIALS["aws_secret_access_key"]),
    )
    distributed.worker("w1", beat=True)
    with distributed.client() as client:
        _round_trip(client, distributed.runtime)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert any(k.startswith("models/manifests/") for k in keys)


def _round_trip(client: Any, rt: Any) -> None:
    from safetensors.torch import load, save

    embedded_client = client
    torch.manual_seed(0)
    mine = torchvision.models.resnet18(num_classes=10)  # the user's model, as trained
    checkpoint = save(mine.state_dict())  # plain safetensors: the user's names, no metadata
    admin = {"X-API-Key": create_key(rt, ["admin"])}
    resp = embedded_client.post(
        "/v1/models",
        data={
            "name": "my-resnet",
            "architecture": "torchvision:resnet18",
            "subject_identity_type": "email",
        },
        files={
            "checkpoint": ("model.safetensors", checkpoint),
            "training_set": ("shapes.npz", _shapes_npz()),
        },
        headers=admin,
    )
    assert resp.status_code == 202, resp.text
    assert resp.json()["num_classes"] == 10 and resp.json()["status"] == "validating"
    until_ready(embedded_client, "my-resnet", admin, timeout=300)
    v1 = embedded_client.get("/v1/models/my-resnet/versions/1", headers=admin).json()
    metrics = v1["metrics"]  # measured by the registration job (a random-init network)
    import unlearning as ul

    counts = (metrics["train_count"], metrics["val_count"], metrics["test_count"])
    assert counts == (40, ul.MIN_VAL, 12)  # the splits of _shapes_npz
    for name in ("RA", "TA", "VA"):
        assert 0 <= metrics[name] <= 100, (name, metrics)
    body = erasure_body([], model="my-resnet")
    del body["sample_ids"]
    body["subject_identities"] = [
        {"identity_type": "email", "identity_value": "person2@example.org"}
    ]
    created = embedded_client.post("/v1/erasure-requests", json=body, headers=admin)
    assert created.status_code == 202, created.text
    assert created.json()["sample_count"] == 4
    done = wait_for_status(embedded_client, created.json()["id"], admin, timeout=300)
    assert done["status"] == "completed" and done["result_version"] == 2
    got = embedded_client.get("/v1/models/my-resnet/versions/2/checkpoint", headers=admin)
    assert got.status_code == 200
    plain = torchvision.models.resnet18(num_classes=10)
    plain.load_state_dict(load(got.content), strict=True)  # unmodified torchvision
    assert set(load(got.content)) == set(mine.state_dict())
