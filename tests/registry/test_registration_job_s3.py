"""The registration job of test_registration_job.py on a fleet's setup: PostgreSQL, a Celery
worker over Redis, and the dataset *and* the model store in an S3 bucket (the moto server):
the ImageFolder stays under its prefix, the worker reads it with ranged GETs, the feature
tables it warms land in the store for every worker, and the erased version loads into
unmodified torchvision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.models_store.conftest import s3_bucket, s3_client, s3_endpoint  # noqa: F401
from tests.models_store.store_harness import CREDENTIALS, REGION
from tests.registry.test_registration_job import (
    N_TEST,
    N_TRAIN,
    N_VAL,
    erase_subject_and_download,
    my_resnet,
    register,
    state_dict_bytes,
)
from tests.support.registration import wait_for_model
from tests.support.service import create_key

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
def test_register_an_s3_image_folder_through_celery_and_postgres(
    distributed: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    from pydantic import SecretStr
    from safetensors.torch import load

    from unlearning.shapes import write_image_folder

    endpoint = request.getfixturevalue("s3_endpoint")
    s3 = request.getfixturevalue("s3_client")
    bucket = request.getfixturevalue("s3_bucket")
    folder = tmp_path / "shapes"
    write_image_folder(folder, N_TRAIN, N_VAL, N_TEST)
    for path in folder.rglob("*.png"):
        s3.put_object(
            Bucket=bucket, Key=f"datasets/shapes/{path.relative_to(folder)}", Body=path.read_bytes()
        )
    distributed.configure(
        store_url=f"s3://{bucket}/models",
        s3_endpoint_url=endpoint,
        s3_region=REGION,
        s3_access_key_id=CREDENTIALS["aws_access_key_id"],
        s3_secret_access_key=SecretStr(CREDENTIALS["aws_secret_access_key"]),
    )
    distributed.worker("w1", beat=True)
    with distributed.client() as client:
        admin = {"X-API-Key": create_key(distributed.runtime, ["admin"])}
        resp = register(
            client,
            admin,
            name="s3-resnet",
            checkpoint=state_dict_bytes(my_resnet(), "pt"),
            manifest=(folder / "manifest.csv").read_bytes(),
            location=f"s3://{bucket}/datasets/shapes",
        )
        assert resp.status_code == 202, resp.text
        ready = wait_for_model(client, "s3-resnet", admin, timeout=300)
        assert ready["status"] == "ready", ready
        v1 = client.get("/v1/models/s3-resnet/versions/1", headers=admin).json()
        metrics = v1["metrics"]  # measured by the Celery worker's registration job
        assert (metrics["train_count"], metrics["val_count"], metrics["test_count"]) == (
            N_TRAIN,
            N_VAL,
            N_TEST,
        )
        for name in ("RA", "TA", "VA"):
            assert 0 <= metrics[name] <= 100, (name, metrics)
        v2 = erase_subject_and_download(client, admin, "s3-resnet")
    torchvision.models.resnet18(num_classes=10).load_state_dict(load(v2), strict=True)
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="models/")["Contents"]}
    assert any("features-" in k for k in keys), sorted(keys)[:20]  # shared by the fleet
