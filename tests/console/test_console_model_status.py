"""The console shows each model's status (issue 12): `ready`; `validating` with its
registration job's phase and percentage; `rejected` with its reason, in the models list and
on the model page, to the keys that may see the model and no other."""

from __future__ import annotations

import html
import io
import re
from typing import Any

import pytest

from tests.console.test_console_auth_matrix import signed_in
from tests.support.service import create_key

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def _pt(obj: Any) -> bytes:
    out = io.BytesIO()
    torch.save(obj, out)
    return out.getvalue()


def _register(client: Any, key: str, name: str, checkpoint: bytes) -> dict[str, Any]:
    from tests.registry.test_own_torchvision_model import _shapes_npz

    resp = client.post(
        "/v1/models",
        data={"name": name, "architecture": "torchvision:resnet18"},
        files={"checkpoint": ("m.pt", checkpoint), "training_set": ("t.npz", _shapes_npz())},
        headers={"X-API-Key": key},
    )
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _row(page: str, name: str) -> str:
    """The models table's row of `name`."""
    found = re.search(rf'<tr>\s*<td><a href="/console/models/{name}">.*?</tr>', page, re.S)
    assert found, f"no row for {name}"
    return found.group(0)


def test_models_list_and_model_page_show_status_phase_percent_and_reason(
    api_client: Any, seeded: Any
) -> None:
    from app.core.db import session_scope
    from app.jobs import attempt, registration
    from tests.support.registration import run_jobs

    admin = create_key(seeded, ["admin"])
    torch.manual_seed(0)
    resnet = torchvision.models.resnet18(num_classes=10)
    checking = _register(api_client, admin, "checking", _pt(resnet.state_dict()))
    _register(api_client, admin, "pickled", _pt(resnet))  # a pickled module, not a state dict
    assert run_jobs(seeded, "pickled") == ["rejected"]
    # a worker has taken the registration of `checking` and reports its phase and percent
    job_id = checking["registration"]["job_id"]
    with session_scope(seeded.session_factory, None) as s:
        claim = registration.claim(session=s, job_id=job_id, worker="w1")
        assert claim is not None
    with session_scope(seeded.session_factory, None) as s:
        assert attempt.heartbeat(
            session=s, job_id=job_id, attempt=claim.attempt, phase="reading data", progress=0.42
        )

    browser, _ = signed_in(api_client.app, admin)
    listing = browser.get("/console/models")
    assert listing.status_code == 200, listing.text
    ready = _row(listing.text, "digits-cnn")
    assert '<span class="badge ready">ready</span>' in ready
    running = _row(listing.text, "checking")
    assert '<span class="badge validating">validating</span>' in running
    assert "reading data" in running and "42.0%" in running
    assert 'value="42.0"' in running  # the progress bar
    rejected = _row(listing.text, "pickled")
    assert '<span class="badge rejected">rejected</span>' in rejected
    assert "never unpickles" in html.unescape(rejected)  # the reason, shortened

    page = browser.get("/console/models/checking")
    assert page.status_code == 200
    status = re.search(r'<dd id="model-status">(.*?)</dd>', page.text, re.S)
    assert status and "validating" in status.group(1) and "reading data" in status.group(1)
    assert "42.0%" in status.group(1)
    page = browser.get("/console/models/pickled")
    status = re.search(r'<dd id="model-status">(.*?)</dd>', page.text, re.S)
    assert status and "rejected" in status.group(1)
    reason = api_client.get("/v1/models/pickled", headers={"X-API-Key": admin}).json()[
        "status_reason"
    ]
    assert reason in html.unescape(status.group(1))  # the whole reason
    page = browser.get("/console/models/digits-cnn")
    status = re.search(r'<dd id="model-status">(.*?)</dd>', page.text, re.S)
    assert status and '<span class="badge ready">ready</span>' in status.group(1)

    # a key limited to one model sees that model's status and nothing of the others
    limited = create_key(seeded, ["models:read"], models=["checking"])
    viewer, _ = signed_in(api_client.app, limited)
    mine = viewer.get("/console/models")
    assert "reading data" in mine.text
    assert "/console/models/pickled" not in mine.text and "never unpickles" not in mine.text
    other = viewer.get("/console/models/pickled")
    assert other.status_code == 403 and "never unpickles" not in other.text
