"""A small Python client of the Lethe API (httpx), used by the CLI.

    from lethe.client import LetheClient
    with LetheClient("http://127.0.0.1:8000", key) as lethe:
        req = lethe.submit("digits-cnn", sample_ids=["digits-00001"])
        done = lethe.wait(req["id"])
        lethe.download("digits-cnn", done["result_version"], "v2.safetensors")

Every POST carries an `Idempotency-Key`, so the client retries transient failures (network
errors, 502/503/504, 409 while the first attempt is still processing) without ever
submitting twice. Errors raise `ApiError` with the server's problem+json.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

TRANSIENT_STATUS = frozenset({502, 503, 504})
FINAL = frozenset({"completed", "canceled", "denied", "failed"})


class ApiError(Exception):
    def __init__(self, status: int, problem: dict[str, Any]):
        self.status, self.problem = status, problem
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")


class ChecksumMismatch(Exception):
    pass


class LetheClient:
    def __init__(
        self,
        url: str,
        key: str | None,
        *,
        http: httpx.Client | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.5,
    ):
        self.http = http or httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.retries, self.backoff_s = retries, backoff_s

    def __enter__(self) -> LetheClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    # --- transport ------------------------------------------------------------------------

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        if method in ("POST", "PATCH"):
            headers.setdefault("Idempotency-Key", str(uuid.uuid4()))
        for attempt in range(self.retries + 1):
            try:
                resp = self.http.request(method, path, headers=headers, **kwargs)
            except httpx.TransportError:
                if attempt == self.retries:
                    raise
            else:
                retry = resp.status_code in TRANSIENT_STATUS or (
                    resp.status_code == 409
                    and resp.headers.get("content-type", "").startswith("application/problem")
                    and resp.json().get("type", "").endswith("/idempotency-key-in-use")
                )
                if not retry or attempt == self.retries:
                    return self._check(resp)
            time.sleep(self.backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def _check(resp: httpx.Response) -> httpx.Response:
        if resp.status_code >= 400:
            try:
                problem = resp.json()
            except ValueError:
                problem = {"detail": resp.text}
            raise ApiError(resp.status_code, problem)
        return resp

    # --- erasure requests -----------------------------------------------------------------

    def submit(
        self,
        model: str,
        *,
        sample_ids: list[str] | None = None,
        subject_identities: list[dict[str, str]] | None = None,
        subject_request_id: str | None = None,
        regulation: str = "gdpr",
        callback_urls: list[str] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "subject_request_id": subject_request_id or str(uuid.uuid4()),
            "regulation": regulation,
            "submitted_time": datetime.now(UTC).isoformat(),
            "model": model,
            "status_callback_urls": callback_urls or [],
        }
        if sample_ids is not None:
            body["sample_ids"] = sample_ids
        if subject_identities is not None:
            body["subject_identities"] = subject_identities
        return dict(self.request("POST", "/v1/erasure-requests", json=body).json())

    def get(self, request_id: str) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/erasure-requests/{request_id}").json())

    def job(self, job_id: str) -> dict[str, Any]:
        """A job: status, phase, progress (0-100), attempts, error."""
        return dict(self.request("GET", f"/v1/jobs/{job_id}").json())

    def cancel(self, request_id: str) -> dict[str, Any]:
        return dict(self.request("DELETE", f"/v1/erasure-requests/{request_id}").json())

    def wait(
        self,
        request_id: str,
        *,
        timeout: float = 3600.0,
        interval: float = 2.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the request is completed, canceled, denied or failed. `on_update` is
        called when the status changes, `on_poll` after every poll."""
        deadline = time.monotonic() + timeout
        last = None
        while True:
            req = self.get(request_id)
            if on_poll:
                on_poll(req)
            if on_update and req["status"] != last:
                on_update(req)
            last = req["status"]
            if req["status"] in FINAL:
                return req
            if time.monotonic() > deadline:
                raise TimeoutError(f"request {request_id} still {req['status']} after {timeout}s")
            time.sleep(interval)

    # --- models and versions --------------------------------------------------------------

    def list_versions(self, model: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/v1/models/{model}/versions").json()["items"])

    def get_version(self, model: str, number: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/v1/models/{model}/versions/{number}").json())

    def download(
        self,
        model: str,
        number: int,
        dest: str | Path,
        *,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> str:
        """Stream a version's checkpoint to `dest` and verify its sha256; returns the digest.

        The file is written next to `dest` and renamed only once it verifies."""
        expected = self.get_version(model, number)["checkpoint_sha256"]
        dest = Path(dest)
        part = dest.with_name(dest.name + ".part")
        digest = hashlib.sha256()
        url = f"/v1/models/{model}/versions/{number}/checkpoint"
        with self.http.stream("GET", url, headers=self.headers) as resp:
            if resp.status_code >= 400:
                resp.read()
                self._check(resp)
            total = int(resp.headers.get("content-length", 0))
            done = 0
            with part.open("wb") as out:
                for chunk in resp.iter_bytes(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    if on_progress:
                        on_progress(done, total)
            etag = resp.headers.get("etag", "").strip('"')
        got = digest.hexdigest()
        if got != expected or (etag and etag != expected):
            part.unlink(missing_ok=True)
            raise ChecksumMismatch(
                f"downloaded sha256 {got}, the version's manifest says {expected}"
            )
        part.replace(dest)
        return got

    def register_model(
        self,
        name: str,
        architecture: str,
        checkpoint: str | Path,
        *,
        training_set: str | Path | None = None,
        dataset: str | None = None,
        dataset_params: str | None = None,
        manifest: bytes | None = None,
        num_classes: int | None = None,
        auto_promote: bool = True,
        subject_identity_type: str = "user_id",
        location: str | None = None,
        layout: str | None = None,
        preprocess: str | None = None,
        head_module: str | None = None,
    ) -> dict[str, Any]:
        """Register a model: the API checks what it can (an `ApiError` with the problem
        if not) and answers the model `validating` while its registration job checks the
        checkpoint and the data and measures version 1; `wait_for_model` returns it once
        `ready` (or `rejected`, with `status_reason`). The training set is an npz
        (`training_set`), a built-in `dataset` with its npz `manifest`, or a dataset by
        reference (`manifest` CSV / JSON Lines + `location` + `layout` + `preprocess`).
        `head_module` names the logits layer of a `torchvision:` model (`classifier.3`)."""
        data: dict[str, str] = {
            "name": name,
            "architecture": architecture,
            "auto_promote": str(auto_promote).lower(),
            "subject_identity_type": subject_identity_type,
        }
        optional = {
            "dataset": dataset,
            "dataset_params": dataset_params,
            "num_classes": str(num_classes) if num_classes else None,
            "location": location,
            "layout": layout,
            "preprocess": preprocess,
            "head_module": head_module,
        }
        data.update({k: v for k, v in optional.items() if v})
        with open(checkpoint, "rb") as ck:
            files: dict[str, Any] = {"checkpoint": (Path(checkpoint).name, ck)}
            if manifest is not None:
                kind = "manifest.csv" if location else "manifest.npz"
                files["manifest"] = (kind, manifest)
            if training_set is not None:
                with open(training_set, "rb") as ts:
                    files["training_set"] = ("training_set.npz", ts)
                    return dict(self.request("POST", "/v1/models", data=data, files=files).json())
            return dict(self.request("POST", "/v1/models", data=data, files=files).json())

    def get_model(self, name: str) -> dict[str, Any]:
        """A model: status (validating, ready, rejected), its registration's phase and
        progress, latest version."""
        return dict(self.request("GET", f"/v1/models/{name}").json())

    def wait_for_model(
        self,
        name: str,
        *,
        timeout: float = 3600.0,
        interval: float = 2.0,
        on_poll: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the model is no longer `validating` (ready or rejected)."""
        deadline = time.monotonic() + timeout
        while True:
            model = self.get_model(name)
            if on_poll:
                on_poll(model)
            if model["status"] != "validating":
                return model
            if time.monotonic() > deadline:
                raise TimeoutError(f"model {name} still validating after {timeout}s")
            time.sleep(interval)
