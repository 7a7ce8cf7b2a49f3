"""Checkpoint downloads: strong ETag = sha256, If-None-Match → 304, one Range → 206 with
Content-Range, unsatisfiable → 416, Repr-Digest (RFC 9530) on full responses."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

URL = "/v1/models/digits-cnn/versions/1/checkpoint"


def test_full_download_etag_and_repr_digest(api_client: Any, admin_headers: dict[str, str]) -> None:
    manifest = api_client.get("/v1/models/digits-cnn/versions/1", headers=admin_headers).json()
    resp = api_client.get(URL, headers=admin_headers)
    assert resp.status_code == 200
    data = resp.content
    sha = hashlib.sha256(data).hexdigest()
    assert sha == manifest["checkpoint_sha256"] and len(data) == manifest["checkpoint_size"]
    assert resp.headers["etag"] == f'"{sha}"'  # strong: no W/
    b64 = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert resp.headers["repr-digest"] == f"sha-256=:{b64}:"
    assert resp.headers["accept-ranges"] == "bytes"
    assert resp.headers["content-length"] == str(len(data))
    assert resp.headers["content-type"] == "application/octet-stream"
    assert "digits-cnn-v1.safetensors" in resp.headers["content-disposition"]
    # it is a safetensors file: 8-byte little-endian header length, then JSON
    n = int.from_bytes(data[:8], "little")
    assert data[8:9] == b"{" and 8 + n < len(data)


def test_if_none_match(api_client: Any, admin_headers: dict[str, str]) -> None:
    etag = api_client.get(URL, headers=admin_headers).headers["etag"]
    for value in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        resp = api_client.get(URL, headers={**admin_headers, "If-None-Match": value})
        assert resp.status_code == 304, value
        assert resp.content == b"" and resp.headers["etag"] == etag
    changed = api_client.get(URL, headers={**admin_headers, "If-None-Match": '"nope"'})
    assert changed.status_code == 200 and changed.content


def test_ranges(api_client: Any, admin_headers: dict[str, str]) -> None:
    full = api_client.get(URL, headers=admin_headers).content
    size = len(full)
    for header, start, end in (
        ("bytes=0-99", 0, 100),
        ("bytes=100-", 100, size),
        ("bytes=-10", size - 10, size),
        (f"bytes={size - 5}-{size + 1000}", size - 5, size),  # clamped to the end
        ("bytes=7-7", 7, 8),
    ):
        resp = api_client.get(URL, headers={**admin_headers, "Range": header})
        assert resp.status_code == 206, header
        assert resp.content == full[start:end], header
        assert resp.headers["content-range"] == f"bytes {start}-{end - 1}/{size}"
        assert resp.headers["content-length"] == str(end - start)
        assert resp.headers["etag"] == f'"{hashlib.sha256(full).hexdigest()}"'
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        resp = api_client.get(URL, headers={**admin_headers, "Range": header})
        assert resp.status_code == 416, header
        assert resp.headers["content-range"] == f"bytes */{size}"
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["type"].endswith("/range-not-satisfiable")
    # several ranges or another unit: ignored, the whole file
    for header in ("bytes=0-1,5-6", "items=0-1"):
        resp = api_client.get(URL, headers={**admin_headers, "Range": header})
        assert resp.status_code == 200 and resp.content == full


def test_resume_an_interrupted_download(api_client: Any, admin_headers: dict[str, str]) -> None:
    full = api_client.get(URL, headers=admin_headers).content
    half = full[: len(full) // 2]
    rest = api_client.get(URL, headers={**admin_headers, "Range": f"bytes={len(half)}-"}).content
    assert hashlib.sha256(half + rest).hexdigest() == hashlib.sha256(full).hexdigest()


def test_downloads_are_audited_and_unknown_versions_404(
    api_client: Any, admin_headers: dict[str, str]
) -> None:
    api_client.get(URL, headers={**admin_headers, "Range": "bytes=0-9"})
    events = api_client.get("/v1/audit?type=checkpoint.downloaded", headers=admin_headers).json()[
        "items"
    ]
    assert events and events[-1]["data"] == {"version": 1, "range": "bytes=0-9"}
    resp = api_client.get("/v1/models/digits-cnn/versions/99/checkpoint", headers=admin_headers)
    assert resp.status_code == 404 and resp.json()["type"].endswith("/not-found")


def test_head_answers_like_get_without_a_body(
    api_client: Any, admin_headers: dict[str, str]
) -> None:
    got = api_client.get(URL, headers=admin_headers)
    head = api_client.head(URL, headers=admin_headers)
    assert head.status_code == 200 and head.content == b""
    for name in ("etag", "content-length", "repr-digest", "accept-ranges", "content-type"):
        assert head.headers[name] == got.headers[name], name
    assert head.headers["content-length"] == str(len(got.content))
    etag = got.headers["etag"]
    unchanged = api_client.head(URL, headers={**admin_headers, "If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.headers["etag"] == etag
    part = api_client.head(URL, headers={**admin_headers, "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == b""
    assert part.headers["content-range"] == f"bytes 0-99/{len(got.content)}"
    assert part.headers["content-length"] == "100"
    size = len(got.content)
    outside = api_client.head(URL, headers={**admin_headers, "Range": f"bytes={size}-"})
    assert outside.status_code == 416 and outside.headers["content-range"] == f"bytes */{size}"
    assert api_client.head(URL, headers={}).status_code == 401
    missing = "/v1/models/digits-cnn/versions/9/checkpoint"
    assert api_client.head(missing, headers=admin_headers).status_code == 404
