"""Model registration by upload: checkpoint checked by its safetensors header against the
architecture (never unpickled), npz training sets with hashed subjects, a built-in dataset
with its manifest, aliases and their history, auto-promote policy. Every registration is a
job: 202 `validating`, then a worker measures version 1 (real metrics, not `{}`) and the
model is `ready`; an erasure on an uploaded training set runs end to end by the embedded
worker."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select, text

from tests.support.registration import register_ready, until_ready
from tests.support.requests import erasure_body, wait_for_status
from tests.support.service import create_key


def digits_npz(subjects: bool = True) -> bytes:
    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    ds = load_dataset(DEMO_DATASET, DEMO_PARAMS)
    arrays: dict[str, Any] = {
        "x": ds.train.x.numpy(),
        "y": ds.train.y.numpy(),
        "ids": np.array([f"up-{i}" for i in ds.train.ids]),
        "x_val": ds.val.x.numpy(),
        "y_val": ds.val.y.numpy(),
        "ids_val": np.array(list(ds.val.ids)),
        "x_test": ds.test.x.numpy(),
        "y_test": ds.test.y.numpy(),
        "ids_test": np.array(list(ds.test.ids)),
    }
    if subjects:
        arrays["subjects"] = np.array([f"person{i // 5}@example.org" for i in range(len(ds.train))])
    out = io.BytesIO()
    np.savez(out, **arrays)
    return out.getvalue()


def _register(client: Any, headers: dict[str, str], files: dict[str, Any], **data: Any) -> Any:
    form = {"architecture": "digits-cnn", **{k: str(v) for k, v in data.items()}}
    return client.post("/v1/models", data=form, files=files, headers=headers)


@pytest.fixture(scope="module")
def upload_npz() -> bytes:
    return digits_npz()


def test_register_from_npz_with_hashed_subjects(
    api_client: Any, seeded: Any, demo_artifacts: Any, upload_npz: bytes
) -> None:
    headers = {"X-API-Key": create_key(seeded, ["models:write", "models:read"])}
    resp = _register(
        api_client,
        headers,
        {
            "checkpoint": ("w.safetensors", demo_artifacts.checkpoint),
            "training_set": ("t.npz", upload_npz),
        },
        name="uploaded",
        subject_identity_type="email",
        auto_promote="false",
    )
    assert resp.status_code == 202, resp.text
    model = resp.json()
    assert resp.headers["location"] == "/v1/models/uploaded"
    assert model["status"] == "validating" and model["latest_version"] == 0
    assert model["dataset_id"] == "npz" and model["auto_promote"] is False
    assert model["training_samples"] == len(np.load(io.BytesIO(upload_npz))["ids"])
    assert model["num_classes"] == 10
    assert model["subject_identity_types"] == ["email"]  # what requests must name
    registration_job = model["registration"]["job_id"]
    # a subject's erasure request while the model validates is accepted and waits
    body = erasure_body([], model="uploaded")
    del body["sample_ids"]
    body["subject_identities"] = [
        {"identity_type": "email", "identity_value": "person3@example.org"}
    ]
    eraser = {"X-API-Key": create_key(seeded, ["erasure:write", "erasure:read"])}
    early = api_client.post("/v1/erasure-requests", json=body, headers=eraser)
    assert early.status_code == 202, early.text
    assert early.json()["sample_count"] == 5
    assert api_client.dispatched == [registration_job]  # no erasure job before `ready`
    assert until_ready(api_client, "uploaded", headers, seeded)["latest_version"] == 1
    got = api_client.get(f"/v1/erasure-requests/{early.json()['id']}", headers=eraser).json()
    assert got["status"] == "queued"
    from app.core.db import session_scope
    from app.jobs.models import UNLEARN, Job
    from app.registry.models import Model

    with session_scope(seeded.session_factory, None) as s:
        kinds = s.execute(
            select(Job.kind, Job.status).join(Model).where(Model.name == "uploaded")
        ).all()
    assert sorted((k, str(v.value)) for k, v in kinds) == [
        ("register", "succeeded"),
        (UNLEARN, "queued"),  # the publish made the waiting request's job
    ]
    v1 = api_client.get("/v1/models/uploaded/versions/1", headers=headers).json()
    import hashlib

    assert (
        v1["checkpoint_sha256"]
        == hashlib.sha256(
            seeded.store.read_checkpoint(seeded.store.get_manifest(v1["checkpoint_sha256"]))
        ).hexdigest()
    )
    # raw subjects are stored nowhere: not in the database, not in the stored npz
    with session_scope(seeded.session_factory, None) as s:
        for table in ("training_samples", "models", "audit_events", "audit_pending"):
            dump = " ".join(str(r) for r in s.execute(text(f"SELECT * FROM {table}")))
            assert "@example.org" not in dump, table
        params = s.query(Model).filter_by(name="uploaded").one().dataset_params
    blob = seeded.store.get_blob(params["blob"])
    assert b"@example.org" not in blob
    assert "subjects" not in np.load(io.BytesIO(blob)).files
    from app.core.subjects import subject_ref
    from app.registry.models import TrainingSample

    secret = seeded.settings.secret_key.get_secret_value()
    with session_scope(seeded.session_factory, None) as s:
        first = s.query(TrainingSample).filter_by(sample_id="up-digits-0000").one_or_none()
        refs = {r.subject_ref for r in s.query(TrainingSample).limit(5000)}
    assert subject_ref(secret, "email", "Person0@Example.org") in refs
    assert first is None or first.subject_ref is not None


def _measured_like_the_demo(v1: dict[str, Any], demo_artifacts: Any) -> None:
    """Version 1's metrics were measured by the registration job on the registered data:
    the demo checkpoint on the demo's splits scores what the demo measured when trained."""
    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    ds = load_dataset(DEMO_DATASET, DEMO_PARAMS)
    metrics = v1["metrics"]
    assert metrics["scope"] == "registered" and v1["method"] == "registered"
    assert (metrics["train_count"], metrics["val_count"], metrics["test_count"]) == (
        len(ds.train),
        len(ds.val),
        len(ds.test),
    )
    for name in ("RA", "TA", "VA"):
        assert metrics[name] == pytest.approx(demo_artifacts.metrics[name], abs=0.5), name
    assert metrics["TA"] > 80  # a trained classifier, not a random one


def test_uploaded_training_set_is_used_by_the_worker(
    embedded_client: Any, seeded: Any, demo_artifacts: Any, upload_npz: bytes
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    model = register_ready(
        embedded_client,
        admin,
        {
            "checkpoint": ("w.safetensors", demo_artifacts.checkpoint),
            "training_set": ("t.npz", upload_npz),
        },
        name="uploaded-e2e",
        architecture="digits-cnn",
        subject_identity_type="email",
    )
    assert model["latest_version"] == 1 and model["registration"]["phase"] == "ready"
    v1 = embedded_client.get("/v1/models/uploaded-e2e/versions/1", headers=admin).json()
    _measured_like_the_demo(v1, demo_artifacts)
    body = erasure_body([], model="uploaded-e2e")
    del body["sample_ids"]
    body["subject_identities"] = [
        {"identity_type": "email", "identity_value": "person3@example.org"}
    ]
    created = embedded_client.post("/v1/erasure-requests", json=body, headers=admin)
    assert created.status_code == 202, created.text
    assert created.json()["sample_count"] == 5
    done = wait_for_status(embedded_client, created.json()["id"], admin)
    assert done["result_version"] == 2
    v2 = embedded_client.get("/v1/models/uploaded-e2e/versions/2", headers=admin).json()
    assert sorted(v2["erased_sample_ids"]) == sorted(
        embedded_client.get(
            f"/v1/erasure-requests/{created.json()['id']}/samples", headers=admin
        ).json()
    )
    assert (
        embedded_client.get("/v1/models/uploaded-e2e/aliases/production", headers=admin).json()[
            "version"
        ]
        == 2
    )


def test_builtin_dataset_with_manifest(
    embedded_client: Any, seeded: Any, demo_artifacts: Any
) -> None:
    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    ds = load_dataset(DEMO_DATASET, DEMO_PARAMS)
    out = io.BytesIO()
    np.savez(out, ids=np.array(list(ds.train.ids)), y=ds.train.y.numpy())
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    files = {"checkpoint": ("w.safetensors", demo_artifacts.checkpoint)}
    missing = _register(embedded_client, admin, files, name="builtin", dataset=DEMO_DATASET)
    assert missing.status_code == 422 and missing.json()["errors"][0]["pointer"] == "/manifest"
    for params, needle in (("[1]", "JSON object"), ('{"blob": "ab"}', "blob")):
        bad = _register(
            embedded_client,
            admin,
            {**files, "manifest": ("m.npz", out.getvalue())},
            name="builtin",
            dataset=DEMO_DATASET,
            dataset_params=params,
        )
        assert bad.status_code == 422 and needle in bad.json()["detail"], bad.text
        assert bad.json()["errors"][0]["pointer"] == "/dataset_params"
    model = register_ready(
        embedded_client,
        admin,
        {**files, "manifest": ("m.npz", out.getvalue())},
        name="builtin",
        architecture="digits-cnn",
        dataset=DEMO_DATASET,
        dataset_params=json.dumps(DEMO_PARAMS),
    )
    assert model["dataset_id"] == DEMO_DATASET
    assert model["training_samples"] == len(ds.train)
    assert model["subject_identity_types"] == []  # its manifest names no subjects
    v1 = embedded_client.get("/v1/models/builtin/versions/1", headers=admin).json()
    _measured_like_the_demo(v1, demo_artifacts)


def _rejected_builtin(
    api_client: Any, seeded: Any, demo_artifacts: Any, manifest: dict[str, Any], **fields: Any
) -> Any:
    """Register the demo checkpoint with a built-in ``dataset`` described by ``manifest``
    (its npz arrays): accepted (202), then rejected by its job at once, not after retries,
    with no version; returns the model."""
    from tests.support.registration import run_jobs

    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    out = io.BytesIO()
    np.savez(out, **manifest)
    files = {"checkpoint": ("w", demo_artifacts.checkpoint), "manifest": ("m.npz", out.getvalue())}
    resp = _register(api_client, admin, files, **fields)
    assert resp.status_code == 202, resp.text
    assert run_jobs(seeded, fields["name"]) == ["rejected"]
    model = api_client.get(f"/v1/models/{fields['name']}", headers=admin).json()
    assert model["status"] == "rejected" and model["latest_version"] == 0
    return model


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_builtin_dataset_that_cannot_be_opened_rejects_the_model(
    api_client: Any, seeded: Any, demo_artifacts: Any
) -> None:
    from lethe.demo import DEMO_DATASET

    model = _rejected_builtin(
        api_client,
        seeded,
        demo_artifacts,
        {"ids": np.array(["a", "b"]), "y": np.array([0, 1])},
        name="no-such-data",
        dataset="no-such-dataset",
        num_classes=10,
    )
    assert "no-such-dataset" in model["status_reason"] and DEMO_DATASET in model["status_reason"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_builtin_dataset_whose_params_leave_too_few_held_out_samples_rejects_the_model(
    api_client: Any, seeded: Any, demo_artifacts: Any
) -> None:
    from lethe.demo import DEMO_DATASET
    from workers.pipeline import load_dataset

    params = {"seed": 0, "val_frac": 0.02}  # 36 val samples: too few to calibrate against
    ds = load_dataset(DEMO_DATASET, params)
    assert len(ds.val) < 100
    model = _rejected_builtin(
        api_client,
        seeded,
        demo_artifacts,
        {"ids": np.array(list(ds.train.ids)), "y": ds.train.y.numpy()},
        name="few-held-out",
        dataset=DEMO_DATASET,
        dataset_params=json.dumps(params),
    )
    assert f"has {len(ds.val)} samples; at least 100" in model["status_reason"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_manifest_that_is_not_the_builtin_datasets_training_split_rejects_the_model(
    api_client: Any, seeded: Any, demo_artifacts: Any
) -> None:
    from lethe.demo import DEMO_DATASET, DEMO_PARAMS
    from workers.pipeline import load_dataset

    ds = load_dataset(DEMO_DATASET, DEMO_PARAMS)
    ids = [*list(ds.train.ids)[3:], "ghost-1"]
    labels = [*ds.train.y.numpy()[3:].tolist(), 0]
    labels[0], labels[1] = (labels[0] + 1) % 10, (labels[1] + 1) % 10  # two mislabelled
    model = _rejected_builtin(
        api_client,
        seeded,
        demo_artifacts,
        {"ids": np.array(ids), "y": np.array(labels)},
        name="wrong-manifest",
        dataset=DEMO_DATASET,
        dataset_params=json.dumps(DEMO_PARAMS),
    )
    reason = model["status_reason"]
    assert "1 sample ids are not in its training split (first 1: ghost-1)" in reason, reason
    assert "3 sample ids of its training split are not in the manifest" in reason, reason
    assert "2 sample ids have another label in the manifest" in reason, reason
    assert model["training_samples"] == 0  # nothing half-registered remains


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_training_inputs_of_another_shape_reject_the_model_at_once(
    api_client: Any, seeded: Any, demo_artifacts: Any
) -> None:
    from tests.support.registration import run_jobs

    arrays = dict(np.load(io.BytesIO(digits_npz(subjects=False))))
    for split in ("x", "x_val", "x_test"):  # 4x4 crops of the 8x8 images
        arrays[split] = np.ascontiguousarray(arrays[split][..., :4, :4])
    out = io.BytesIO()
    np.savez(out, **arrays)
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    resp = _register(
        api_client,
        admin,
        {"checkpoint": ("w", demo_artifacts.checkpoint), "training_set": ("t.npz", out.getvalue())},
        name="flat-inputs",
    )
    assert resp.status_code == 202, resp.text
    assert run_jobs(seeded, "flat-inputs") == ["rejected"]
    model = api_client.get("/v1/models/flat-inputs", headers=admin).json()
    assert model["status"] == "rejected"
    assert (
        "training inputs (each of shape (1, 4, 4)) do not fit architecture 'digits-cnn'"
        in (model["status_reason"])
    ), model["status_reason"]


def test_checkpoints_are_checked_and_never_unpickled(
    api_client: Any, seeded: Any, demo_artifacts: Any, upload_npz: bytes, tmp_path: Any
) -> None:
    import pickle

    from safetensors.numpy import save

    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    ts = ("t.npz", upload_npz)

    class Boom:
        def __reduce__(self) -> Any:
            return (open, (str(tmp_path / "pwned"), "w"))

    resp = _register(
        api_client,
        admin,
        {"checkpoint": ("w.pt", pickle.dumps(Boom())), "training_set": ts},
        name="p",
    )
    assert resp.status_code == 422 and resp.json()["type"].endswith("/invalid-checkpoint")
    assert not (tmp_path / "pwned").exists()

    resp = _register(
        api_client,
        admin,
        {
            "checkpoint": ("w.st", save({"fc.weight": np.zeros((2, 2), np.float32)})),
            "training_set": ts,
        },
        name="p",
    )
    assert resp.status_code == 422 and resp.json()["type"].endswith("/checkpoint-mismatch")
    assert "fc.weight" in resp.json()["unexpected"] and resp.json()["missing"]

    # right names, a wrong head width: 10 classes in the data, 12 in the checkpoint
    from safetensors.torch import load
    from safetensors.torch import save as tsave

    tensors = load(demo_artifacts.checkpoint)
    head = [k for k, v in tensors.items() if v.shape[:1] == (10,)]
    import torch

    wrong = {
        k: (torch.zeros((12, *v.shape[1:]), dtype=v.dtype) if k in head else v)
        for k, v in tensors.items()
    }
    resp = _register(
        api_client, admin, {"checkpoint": ("w.st", tsave(wrong)), "training_set": ts}, name="p"
    )
    assert resp.status_code == 422, resp.text
    assert {m["tensor"] for m in resp.json()["mismatched"]} == set(head)
    # a wrong dtype
    half = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    resp = _register(
        api_client, admin, {"checkpoint": ("w.st", tsave(half)), "training_set": ts}, name="p"
    )
    assert resp.status_code == 422 and "F16" in json.dumps(resp.json()["mismatched"])
    # the same checkpoint is fine with 12 classes declared
    resp = _register(
        api_client,
        admin,
        {"checkpoint": ("w.st", tsave(wrong)), "training_set": ts},
        name="p12",
        num_classes=12,
    )
    assert resp.status_code == 202, resp.text

    unknown = _register(
        api_client,
        admin,
        {"checkpoint": ("w", demo_artifacts.checkpoint), "training_set": ts},
        name="q",
        architecture="vgg99",
    )
    assert unknown.status_code == 422 and "digits-cnn" in unknown.json()["detail"]
    from app.core.db import session_scope
    from app.registry.models import Model

    with session_scope(seeded.session_factory, None) as s:
        assert {m.name for m in s.query(Model)} == {"digits-cnn", "p12"}


def test_bad_training_sets_and_names(
    api_client: Any, seeded: Any, demo_artifacts: Any, upload_npz: bytes
) -> None:
    admin = {"X-API-Key": create_key(seeded, ["admin"])}
    ck = ("w", demo_artifacts.checkpoint)

    def npz(**arrays: Any) -> tuple[str, bytes]:
        out = io.BytesIO()
        np.savez(out, **arrays)
        return ("t.npz", out.getvalue())

    cases = [
        ({"training_set": ("t.npz", b"not a zip")}, "readable npz"),
        (
            {"training_set": npz(x=np.zeros((2, 3)), y=np.array([0, 1]), ids=np.array(["a", "b"]))},
            "lacks",
        ),
        (
            {
                "training_set": npz(
                    x=np.zeros((2, 3)),
                    y=np.array([0, 1]),
                    ids=np.array(["a", "a"]),
                    x_val=np.zeros((1, 3)),
                    y_val=np.array([0]),
                    ids_val=np.array(["v"]),
                )
            },
            "unique",
        ),
        (
            {
                "training_set": npz(
                    x=np.zeros((2, 3)),
                    y=np.array([0.5, 1]),
                    ids=np.array(["a", "b"]),
                    x_val=np.zeros((1, 3)),
                    y_val=np.array([0]),
                    ids_val=np.array(["v"]),
                )
            },
            "integer",
        ),
        (
            {
                "training_set": npz(
                    x=np.array([object()] * 2, dtype=object),
                    y=np.array([0, 1]),
                    ids=np.array(["a", "b"]),
                    x_val=np.zeros((1, 3)),
                    y_val=np.array([0]),
                    ids_val=np.array(["v"]),
                )
            },
            "pickled",
        ),
        (
            {
                "training_set": npz(
                    x=np.zeros((2, 3)),
                    y=np.array([0, 1]),
                    ids=np.array(["a", "b"]),
                    x_val=np.zeros((5, 3)),
                    y_val=np.zeros(5, dtype=np.int64),
                    ids_val=np.array([f"v{i}" for i in range(5)]),
                )
            },
            "at least 100",
        ),
        ({}, "exactly one"),
    ]
    for bad_id in ("a\n", "a\u0085", "\u202ea"):  # C0, C1, right-to-left override
        training_set = npz(
            x=np.zeros((2, 3)),
            y=np.array([0, 1]),
            ids=np.array(["b", bad_id]),
            x_val=np.zeros((1, 3)),
            y_val=np.array([0]),
            ids_val=np.array(["v"]),
        )
        cases.append(({"training_set": training_set}, "bidirectional-override"))
    for files, needle in cases:
        resp = _register(api_client, admin, {"checkpoint": ck, **files}, name="bad")
        assert resp.status_code == 422, (needle, resp.text)
        assert needle in resp.json()["detail"], (needle, resp.text)
    resp = _register(
        api_client,
        admin,
        {"checkpoint": ck, "training_set": ("t.npz", upload_npz)},
        name="bad name!",
    )
    assert resp.status_code == 422
    dup = _register(
        api_client,
        admin,
        {"checkpoint": ck, "training_set": ("t.npz", upload_npz)},
        name="digits-cnn",
    )
    assert dup.status_code == 409


def test_registration_needs_models_write_for_that_model(
    api_client: Any, seeded: Any, demo_artifacts: Any, upload_npz: bytes
) -> None:
    files = {"checkpoint": ("w", demo_artifacts.checkpoint), "training_set": ("t.npz", upload_npz)}
    reader = {"X-API-Key": create_key(seeded, ["models:read"])}
    assert _register(api_client, reader, files, name="m1").status_code == 403
    limited = {"X-API-Key": create_key(seeded, ["models:write"], models=["m2"])}
    assert _register(api_client, limited, files, name="m1").status_code == 403
    assert _register(api_client, limited, files, name="m2").status_code == 202


def test_aliases_put_get_history(
    api_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    base = "/v1/models/digits-cnn/aliases"
    assert api_client.get(f"{base}/production", headers=admin_headers).json()["version"] == 1
    assert api_client.get(f"{base}/staging", headers=admin_headers).status_code == 404
    resp = api_client.put(f"{base}/staging", json={"version": 1}, headers=admin_headers)
    assert resp.status_code == 200 and resp.json()["version"] == 1
    again = api_client.put(f"{base}/staging", json={"version": 1}, headers=admin_headers)
    assert again.status_code == 200
    missing = api_client.put(f"{base}/staging", json={"version": 7}, headers=admin_headers)
    assert missing.status_code == 404
    bad = api_client.put(f"{base}/bad alias", json={"version": 1}, headers=admin_headers)
    assert bad.status_code == 422
    history = api_client.get(f"{base}/staging/history", headers=admin_headers).json()
    assert history["alias"] == "staging"
    assert [(h["from_version"], h["to_version"]) for h in history["items"]] == [(None, 1)]
    assert history["items"][0]["actor"].startswith("key:")
    prod = api_client.get(f"{base}/production/history", headers=admin_headers).json()["items"]
    assert prod[0]["actor"] == "system:seed-demo"
    events = api_client.get("/v1/audit?type=alias.moved", headers=admin_headers).json()["items"]
    assert [e["data"]["alias"] for e in events] == ["production", "staging"]
