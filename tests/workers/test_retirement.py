"""Erased means no longer served: a version that erases a sample retires every earlier
version trained on it (410 Gone naming the successor, no alias may point at it, audited),
the version record counts what was erased cumulatively and what was new, and after the
retention the retired versions' own blobs leave the store while shared ones stay."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.requests import download, submit, training_ids, wait_for_status

MODEL = "/v1/models/digits-cnn"


def _erase(client: Any, ids: list[str], headers: dict[str, str]) -> int:
    done = wait_for_status(client, submit(client, ids, headers)["id"], headers)
    return int(done["result_version"])


def _versions(client: Any, headers: dict[str, str]) -> dict[int, dict[str, Any]]:
    items = client.get(f"{MODEL}/versions", headers=headers).json()["items"]
    return {v["number"]: v for v in items}


def _retired_events(client: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    resp = client.get("/v1/audit", params={"type": "version.retired"}, headers=headers)
    assert resp.status_code == 200, resp.text
    return [e["data"] for e in resp.json()["items"]]


def test_erasing_retires_earlier_versions_and_the_record_tells_the_truth(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    client, headers = embedded_client, admin_headers
    a, b = training_ids(seeded)[::50][:2]
    staging = client.put(f"{MODEL}/aliases/staging", json={"version": 1}, headers=headers)
    assert staging.status_code == 200, staging.text

    assert _erase(client, [a], headers) == 2
    v1 = _versions(client, headers)[1]
    assert (v1["status"], v1["superseded_by"]) == ("retired", 2) and v1["retired_at"]
    gone = client.get(f"{MODEL}/versions/1/checkpoint", headers=headers)
    assert gone.status_code == 410
    assert gone.headers["content-type"].startswith("application/problem+json")
    assert gone.json()["superseded_by"] == 2
    assert gone.json()["successor"] == f"{MODEL}/versions/2"
    # aliases that pointed at v1 were moved to v2 by the publish; none may go back
    for alias in ("staging", "production"):
        assert client.get(f"{MODEL}/aliases/{alias}", headers=headers).json()["version"] == 2
    refused = client.put(f"{MODEL}/aliases/staging", json={"version": 1}, headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("/retired-version")
    assert "version 2" in refused.json()["detail"]
    assert client.get(f"{MODEL}/aliases/staging", headers=headers).json()["version"] == 2

    # a second request names the erased sample again and a new one
    assert _erase(client, [a, b], headers) == 3
    v3 = client.get(f"{MODEL}/versions/3", headers=headers).json()
    assert v3["erased_sample_ids"] == sorted([a, b])
    assert v3["erased_count"] == len(v3["erased_sample_ids"]) == 2
    assert v3["new_sample_ids"] == [b]
    # the job forgot only b, on top of v2 which had forgotten a
    assert v3["metrics"]["new_forget_count"] == v3["metrics"]["forget_count"] == 1
    assert v3["metrics"]["erased_count"] == 2
    assert _versions(client, headers)[2]["superseded_by"] == 3

    # a request for a sample already erased erases nothing new: v3 holds no erased data,
    # so it is not retired and stays downloadable
    assert _erase(client, [b], headers) == 4
    v4 = client.get(f"{MODEL}/versions/4", headers=headers).json()
    assert v4["new_sample_ids"] == [] and v4["erased_count"] == 2
    assert _versions(client, headers)[3]["status"] == "live"
    blob, _ = download(client, f"{MODEL}/versions/3/checkpoint", headers)
    assert blob
    assert _retired_events(client, headers) == [
        {"version": 1, "superseded_by": 2, "reason": "trained on data a later version erased"},
        {"version": 2, "superseded_by": 3, "reason": "trained on data a later version erased"},
    ]


# the app's own housekeeping keeps retired blobs for 30 days; the test runs it with each
# retention itself
@pytest.mark.overrides(retired_retention_days=30)
def test_retired_blobs_leave_the_store_after_the_retention_shared_ones_stay(
    embedded_client: Any, seeded: Any, admin_headers: dict[str, str]
) -> None:
    from app.housekeeping import housekeeping

    client, headers = embedded_client, admin_headers
    store = seeded.store
    assert _erase(client, training_ids(seeded)[::50][:3], headers) == 2
    versions = _versions(client, headers)
    old = store.get_manifest(versions[1]["checkpoint_sha256"])
    new = store.get_manifest(versions[2]["checkpoint_sha256"])
    only_old = {t.digest for t in old.tensors} - {t.digest for t in new.tensors}
    shared = {t.digest for t in old.tensors} & {t.digest for t in new.tensors}
    assert only_old

    def run(days: float) -> int:
        settings = seeded.settings.model_copy(update={"retired_retention_days": days})
        done = housekeeping(
            session_factory=seeded.session_factory, dispatcher=None, settings=settings
        )
        return done.retired_blobs_deleted

    assert run(30) == 0  # retired minutes ago: kept for the retention
    assert store.has_manifest(old.sha256) and all(store.has_blob(d) for d in only_old)

    assert run(0) == len(only_old)
    assert not store.has_manifest(old.sha256)
    assert not any(store.has_blob(d) for d in only_old)
    assert all(store.has_blob(d) for d in shared)
    assert store.verify(new) == []
    assert run(0) == 0  # done once
    blob, _ = download(client, f"{MODEL}/versions/2/checkpoint", headers)
    assert blob
    events = client.get(
        "/v1/audit", params={"type": "version.blobs_deleted"}, headers=headers
    ).json()["items"]
    assert [e["data"]["version"] for e in events] == [1]
