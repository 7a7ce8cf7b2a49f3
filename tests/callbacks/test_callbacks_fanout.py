"""A fan-out parent's status callbacks summarise its children: one event per change of
the parent (not one per model), numbered in order, and the `completed` one, sent when the
last child completes, lists every model with its result version (issue 14)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.callbacks.callback_receiver import Receiver
from tests.callbacks.test_callbacks import _verified
from tests.support.requests import add_demo_models, demo_subject, subject_body, wait_for_status
from tests.support.services import wait_until

MODELS = ["digits-cnn", "digits-cnn-b", "digits-cnn-c"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_parent_callbacks_summarise_the_children_in_order(
    embedded_client: Any,
    seeded: Any,
    admin_headers: dict[str, str],
    receiver: Receiver,
    demo_artifacts: Any,
) -> None:
    client, headers = embedded_client, admin_headers
    add_demo_models(seeded, MODELS[1:], demo_artifacts)
    secret = client.get("/v1/callbacks/signing-secret", headers=headers).json()["secret"]
    subject, _ = demo_subject()
    body = subject_body(subject, status_callback_urls=[receiver.url()])
    resp = client.post("/v1/erasure-requests", json=body, headers=headers)
    assert resp.status_code == 202, resp.text
    parent = resp.json()["id"]
    done = wait_for_status(client, parent, headers, timeout=300)

    def all_delivered() -> list[dict[str, Any]] | None:
        items = client.get(
            "/v1/callbacks/deliveries", params={"request_id": parent}, headers=headers
        ).json()["items"]
        return items if items and all(d["status"] == "delivered" for d in items) else None

    deliveries = wait_until(all_delivered, timeout=30, what="every callback delivered")
    payloads = _verified(receiver.snapshot(), secret)
    # the first POST got a 500 and was retried: the portal still sees each event once, in order
    by_sequence = {p["sequence"]: p for p in payloads}
    assert sorted(by_sequence) == list(range(1, len(deliveries) + 1))
    assert [p["sequence"] for p in payloads] == sorted(p["sequence"] for p in payloads)
    statuses = [by_sequence[n]["data"]["status"] for n in sorted(by_sequence)]
    assert statuses == ["queued", "running", "completed"]
    last = by_sequence[len(deliveries)]["data"]
    assert last["id"] == parent and last["model"] is None
    assert [(m["model"], m["result_version"]) for m in last["models"]] == [(m, 2) for m in MODELS]
    assert [m["request_id"] for m in last["models"]] == [c["request_id"] for c in done["children"]]
    # the children themselves have no targets: nothing was queued for them
    for child in done["children"]:
        items = client.get(
            "/v1/callbacks/deliveries", params={"request_id": child["request_id"]}, headers=headers
        ).json()["items"]
        assert items == []
    assert json.loads(receiver.snapshot()[-1].body)["data"]["status"] == "completed"
