"""`lethe models register` for a registration job: it waits with the job's phase and percent
on stderr and ends with the version and where to download it; `--no-wait` returns the
`validating` model at once."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.lethe.test_client_cli import cli  # noqa: F401
from tests.registry.test_registration_job import (  # noqa: F401
    datasets,
    my_resnet,
    roots_client,
    state_dict_bytes,
)
from tests.support.registration import wait_for_model
from tests.support.service import create_key

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_register_waits_with_progress_and_says_where_to_download(
    seeded: Any, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    run = request.getfixturevalue("cli")  # the fixtures of the modules imported above
    root = request.getfixturevalue("datasets")
    api = request.getfixturevalue("roots_client")
    key = create_key(seeded, ["models:write", "models:read"])
    folder = root / "shapes"
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(state_dict_bytes(my_resnet(), "pt"))
    args = [
        "models", "register", "--architecture", "torchvision:resnet18",
        "--checkpoint", str(checkpoint), "--manifest", str(folder / "manifest.csv"),
        "--location", str(folder), "--layout", "image-folder",
        "--preprocess", '{"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}',
        "--interval", "0.2",
    ]  # fmt: skip
    out = run(api, seeded.settings, *args, "--name", "cli-resnet", key=key)
    model = json.loads(out.stdout)
    assert model["status"] == "ready" and model["latest_version"] == 1
    assert "registering cli-resnet" in out.stderr and "100%" in out.stderr
    assert "cli-resnet version 1 is ready" in out.stderr
    assert "lethe versions download cli-resnet 1" in out.stderr

    module = io.BytesIO()
    torch.save(my_resnet(), module)  # a pickled module: the job rejects it
    checkpoint.write_bytes(module.getvalue())
    out = run(api, seeded.settings, *args, "--name", "cli-pickled", "--no-wait", key=key)
    assert json.loads(out.stdout)["status"] == "validating"
    headers = {"X-API-Key": key}
    assert wait_for_model(api, "cli-pickled", headers)["status"] == "rejected"
    out = run(api, seeded.settings, *args, "--name", "cli-pickled", key=key, code=1)
    assert "already exists" in out.stderr
