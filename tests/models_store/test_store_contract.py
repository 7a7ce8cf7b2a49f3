"""The model-store contract: every backend must pass every test here."""

from __future__ import annotations

import hashlib
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors import safe_open

from models_store import (
    BlobNotFound,
    CheckpointManifest,
    CorruptBlob,
    InvalidCheckpoint,
    InvalidDigest,
)
from tests.models_store.safetensors_builders import (
    METADATA,
    hand_built,
    raw_file,
    tiny_model,
    to_bytes,
)
from tests.models_store.store_harness import Harness

MiB = 1024 * 1024


def load(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with safe_open(str(path), framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118


def assert_same_tensors(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert sorted(actual) == sorted(expected)
    for name, array in expected.items():
        assert actual[name].dtype == array.dtype, name
        np.testing.assert_array_equal(actual[name], array)


# round trip and canonical assembly -------------------------------------------------------


def test_round_trip_loads_with_safetensors(harness: Harness, tmp_path: Path) -> None:
    tensors = tiny_model()
    put = harness.store.put_checkpoint(to_bytes(tensors, METADATA))
    manifest = put.manifest

    assert manifest == harness.store.get_manifest(manifest.sha256)
    assert harness.store.has_manifest(manifest.sha256)
    assert dict(manifest.metadata) == METADATA
    assert {t.name for t in manifest.tensors} == set(tensors)
    assert put.total_bytes == manifest.size
    assert put.new_bytes == sum(a.nbytes for a in tensors.values())

    data = harness.store.read_checkpoint(manifest)
    assert len(data) == manifest.size
    assert hashlib.sha256(data).hexdigest() == manifest.sha256
    assert b"".join(harness.store.open_checkpoint(manifest)) == data

    path = tmp_path / "model.safetensors"
    path.write_bytes(data)
    loaded, metadata = load(path)
    assert_same_tensors(loaded, tensors)
    assert metadata == METADATA
    assert harness.store.verify(manifest) == []


def test_assembly_is_canonical_and_deterministic(harness: Harness) -> None:
    tensors = tiny_model()
    via_library = harness.store.put_checkpoint(to_bytes(tensors, METADATA))
    reordered = hand_built(tensors, METADATA, order=sorted(tensors, reverse=True))
    via_hand = harness.store.put_checkpoint(io.BytesIO(reordered))

    assert reordered != to_bytes(tensors, METADATA)  # two different files...
    assert via_hand.manifest.sha256 == via_library.manifest.sha256  # ...one checkpoint
    assert via_hand.new_bytes == 0
    first = harness.store.read_checkpoint(via_library.manifest)
    second = harness.store.read_checkpoint(via_hand.manifest)
    assert first == second

    again = harness.store.put_checkpoint(first)
    assert again.manifest.sha256 == via_library.manifest.sha256
    assert again.new_bytes == 0
    assert harness.store.read_checkpoint(again.manifest) == first

    # Header padded to 8 bytes, and every tensor aligned to its item size.
    header_len = int.from_bytes(first[:8], "little")
    assert header_len % 8 == 0
    for offset, tensor in via_library.manifest.segments():
        assert offset % {"F32": 4, "I64": 8, "F16": 2, "U8": 1}[tensor.dtype] == 0


def test_metadata_is_part_of_the_identity(harness: Harness) -> None:
    tensors = tiny_model()
    with_meta = harness.store.put_checkpoint(to_bytes(tensors, METADATA))
    without = harness.store.put_checkpoint(to_bytes(tensors))
    assert with_meta.manifest.sha256 != without.manifest.sha256
    assert without.new_bytes == 0
    assert dict(without.manifest.metadata) == {}


def test_head_only_version_stores_only_the_head(harness: Harness, tmp_path: Path) -> None:
    base_tensors = tiny_model()
    base = harness.store.put_checkpoint(to_bytes(base_tensors, METADATA))
    unlearned_tensors = tiny_model(head_seed=1)
    head_bytes = sum(unlearned_tensors[n].nbytes for n in ("head.weight", "head.bias"))
    keys_before = set(harness.stored_keys())

    unlearned = harness.store.put_checkpoint(to_bytes(unlearned_tensors, METADATA))

    assert unlearned.manifest.sha256 != base.manifest.sha256
    assert unlearned.new_bytes == head_bytes
    assert unlearned.total_bytes == unlearned.manifest.size
    new_keys = set(harness.stored_keys()) - keys_before
    assert len([k for k in new_keys if k.startswith("blobs/")]) == 2
    assert len([k for k in new_keys if k.startswith("manifests/")]) == 1
    for put, tensors in ((base, base_tensors), (unlearned, unlearned_tensors)):
        path = tmp_path / f"{put.manifest.sha256}.safetensors"
        path.write_bytes(harness.store.read_checkpoint(put.manifest))
        assert_same_tensors(load(path)[0], tensors)


def test_put_is_idempotent(harness: Harness) -> None:
    data = to_bytes(tiny_model(), METADATA)
    first = harness.store.put_checkpoint(data)
    keys = harness.stored_keys()
    second = harness.store.put_checkpoint(data)
    assert second.manifest == first.manifest
    assert second.new_bytes == 0
    assert harness.stored_keys() == keys


def test_put_checkpoint_from_streams(harness: Harness) -> None:
    data = to_bytes(tiny_model(), METADATA)
    expected = harness.store.put_checkpoint(data).manifest.sha256

    class Unseekable(io.RawIOBase):
        def __init__(self, payload: bytes) -> None:
            self._inner = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: Any) -> int:
            chunk = self._inner.read(min(len(buffer), 1000))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    assert harness.store.put_checkpoint(io.BufferedReader(Unseekable(data))).manifest.sha256 == (
        expected
    )
    positioned = io.BytesIO(b"ignored prefix" + data)
    positioned.seek(len(b"ignored prefix"))
    assert harness.store.put_checkpoint(positioned).manifest.sha256 == expected


def test_empty_and_zero_sized_tensors(harness: Harness, tmp_path: Path) -> None:
    tensors = {"empty": np.zeros((0, 3), dtype=np.float32), "one": np.ones(1, dtype=np.float32)}
    put = harness.store.put_checkpoint(to_bytes(tensors))
    path = tmp_path / "m.safetensors"
    path.write_bytes(harness.store.read_checkpoint(put.manifest))
    assert_same_tensors(load(path)[0], tensors)
    assert harness.store.verify(put.manifest) == []


# ranges ------------------------------------------------------------------------------------


def _ranges(size: int, header: int) -> list[tuple[int, int | None]]:
    return [
        (0, 1),  # first byte
        (size - 1, size),  # last byte
        (size - 1, None),
        (0, None),  # whole
        (0, size),
        (header - 3, header + 5),  # across the header/data boundary
        (header + 100, size - 100),  # middle, across several tensors
        (header + 1, header + 2),  # inside one tensor
        (17, 17),  # empty
        (size, None),  # empty at the end
    ]


def test_ranges(harness: Harness) -> None:
    put = harness.store.put_checkpoint(to_bytes(tiny_model(), METADATA))
    manifest = put.manifest
    whole = harness.store.read_checkpoint(manifest)
    for start, end in _ranges(manifest.size, len(manifest.header)):
        got = b"".join(harness.store.open_checkpoint(manifest, start, end))
        assert got == whole[start:end], (start, end)


@pytest.mark.parametrize(
    "bounds",
    [
        lambda size: (-1, None),
        lambda size: (0, -1),
        lambda size: (5, 4),
        lambda size: (0, size + 1),
        lambda size: (size + 1, None),
    ],
    ids=["negative-start", "negative-end", "reversed", "end-past-size", "start-past-size"],
)
def test_invalid_range_is_refused_before_streaming(
    harness: Harness, bounds: Callable[[int], tuple[int, int | None]]
) -> None:
    manifest = harness.store.put_checkpoint(to_bytes(tiny_model())).manifest
    start, end = bounds(manifest.size)
    with pytest.raises(ValueError, match="outside"):
        harness.store.open_checkpoint(manifest, start, end)


def test_large_tensor_streams_in_chunks(harness: Harness) -> None:
    big = {"big": np.arange(3 * MiB // 4 + 5, dtype=np.float32), "small": np.ones(3, np.float32)}
    manifest = harness.store.put_checkpoint(to_bytes(big)).manifest
    chunks = list(harness.store.open_checkpoint(manifest))
    assert max(len(c) for c in chunks) <= MiB
    assert hashlib.sha256(b"".join(chunks)).hexdigest() == manifest.sha256
    start = len(manifest.header) + MiB + 3
    part = b"".join(harness.store.open_checkpoint(manifest, start, start + MiB))
    assert part == np.arange(3 * MiB // 4 + 5, dtype=np.float32).tobytes()[MiB + 3 : 2 * MiB + 3]


# corruption --------------------------------------------------------------------------------


def _corrupt_one(harness: Harness, manifest: CheckpointManifest, name: str) -> tuple[int, int]:
    """Flip one byte of the named tensor's blob; return its [start, end) in the file."""
    for offset, tensor in manifest.segments():
        if tensor.name == name:
            data = bytearray(harness.store.get_blob(tensor.digest))
            data[len(data) // 2] ^= 0xFF
            harness.overwrite_blob(tensor.digest, bytes(data))
            return offset, offset + tensor.length
    raise AssertionError(name)


def test_corrupt_blob_is_never_served(harness: Harness) -> None:
    manifest = harness.store.put_checkpoint(to_bytes(tiny_model(), METADATA)).manifest
    whole = harness.store.read_checkpoint(manifest)
    lo, hi = _corrupt_one(harness, manifest, "head.weight")

    served = bytearray()
    with pytest.raises(CorruptBlob, match="corrupt"):
        for chunk in harness.store.open_checkpoint(manifest):
            served += chunk
    assert bytes(served) == whole[:lo]  # nothing of the corrupt blob came out

    with pytest.raises(CorruptBlob):
        b"".join(harness.store.open_checkpoint(manifest, lo + 1, lo + 2))
    with pytest.raises(CorruptBlob):
        harness.store.read_checkpoint(manifest)
    with pytest.raises(CorruptBlob):
        harness.store.get_blob(next(t.digest for t in manifest.tensors if t.name == "head.weight"))
    # Ranges that do not touch the damaged blob are still served.
    assert b"".join(harness.store.open_checkpoint(manifest, 0, lo)) == whole[:lo]
    assert b"".join(harness.store.open_checkpoint(manifest, hi)) == whole[hi:]

    problems = harness.store.verify(manifest)
    assert len(problems) == 1
    assert hash(manifest) == hash(manifest.sha256)
    assert "head.weight" in problems[0]
    assert "corrupt" in problems[0]


def test_truncated_blob_is_corrupt(harness: Harness) -> None:
    manifest = harness.store.put_checkpoint(to_bytes(tiny_model())).manifest
    tensor = next(t for t in manifest.tensors if t.name == "backbone.conv2.weight")
    harness.overwrite_blob(tensor.digest, harness.store.get_blob(tensor.digest)[:-4])
    with pytest.raises(CorruptBlob):
        harness.store.read_checkpoint(manifest)
    with pytest.raises(CorruptBlob):
        harness.store.get_blob(tensor.digest)
    assert "backbone.conv2.weight" in harness.store.verify(manifest)[0]
    harness.overwrite_blob(tensor.digest, b"\0" * (tensor.length * 3))  # longer than stored
    with pytest.raises(CorruptBlob):
        harness.store.read_checkpoint(manifest)


def test_missing_blob(harness: Harness) -> None:
    manifest = harness.store.put_checkpoint(to_bytes(tiny_model())).manifest
    tensor = manifest.tensors[-1]
    harness.delete_blob(tensor.digest)
    with pytest.raises(BlobNotFound):
        harness.store.read_checkpoint(manifest)
    with pytest.raises(BlobNotFound):
        harness.store.get_blob(tensor.digest)
    assert not harness.store.has_blob(tensor.digest)
    problems = harness.store.verify(manifest)
    assert problems == [f"tensor {tensor.name!r}: blob {tensor.digest} is missing"]


def test_unknown_manifest(harness: Harness) -> None:
    with pytest.raises(BlobNotFound):
        harness.store.get_manifest("0" * 64)
    assert not harness.store.has_manifest("0" * 64)


# refused inputs ----------------------------------------------------------------------------

_F32x2 = {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}


def _invalid_files() -> list[Any]:
    valid = to_bytes(tiny_model(), METADATA)
    return [
        pytest.param(pickle.dumps({"weight": [1.0, 2.0]}), "pickle", id="pickle"),
        pytest.param(b"PK\x03\x04" + b"\0" * 64, "zip archive", id="torch-zip"),
        pytest.param(valid[: len(valid) - 10], "truncated", id="truncated-data"),
        pytest.param(valid[:20], "past the end of the file", id="truncated-header"),
        pytest.param(b"\x01\x02", "shorter than the 8-byte header length", id="tiny"),
        pytest.param(raw_file({"a": _F32x2}, b"\0" * 8, length=10**6), "past the end", id="len"),
        pytest.param(valid + b"\0" * 8, "trailing bytes", id="trailing-garbage"),
        pytest.param(
            raw_file(
                {
                    "a": _F32x2,
                    "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
                },
                b"\0" * 12,
            ),
            "overlap",
            id="overlapping-offsets",
        ),
        pytest.param(
            raw_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}, b"\0" * 16),
            "holes",
            id="hole",
        ),
        pytest.param(
            raw_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 16]}}, b"\0" * 16),
            "needs 8",
            id="shape-mismatch",
        ),
        pytest.param(
            raw_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 80]}}, b"\0" * 8),
            "span 80",
            id="offsets-disagree-with-shape",
        ),
        pytest.param(
            raw_file({"a": {"dtype": "F32", "shape": [20], "data_offsets": [0, 80]}}, b"\0" * 8),
            "tensors need 80 data bytes but the file has 8",
            id="offsets-beyond-file",
        ),
        pytest.param(
            raw_file({"a": {"dtype": "Q7", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8),
            "unknown dtype",
            id="unknown-dtype",
        ),
        pytest.param(
            raw_file({"a": {**_F32x2, "extra": 1}}, b"\0" * 8),
            "exactly dtype, shape and data_offsets",
            id="extra-field",
        ),
        pytest.param(
            raw_file({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8),
            "invalid shape",
            id="negative-shape",
        ),
        pytest.param(
            raw_file({"__metadata__": {"epochs": 3}, "a": _F32x2}, b"\0" * 8),
            "__metadata__ must map strings to strings",
            id="metadata-not-str",
        ),
        pytest.param(
            raw_file(b'{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "a": 1}'),
            "duplicate key",
            id="duplicate-key",
        ),
        pytest.param(raw_file(b"{not json}  "), "not JSON", id="not-json"),
        pytest.param(raw_file(b"[1, 2]"), "does not start with", id="not-an-object"),
    ]


@pytest.mark.parametrize("data,message", _invalid_files())
def test_invalid_checkpoint_is_refused_and_stores_nothing(
    harness: Harness, data: bytes, message: str
) -> None:
    with pytest.raises(InvalidCheckpoint, match=message):
        harness.store.put_checkpoint(data)
    assert harness.stored_keys() == []


class _Exploit:
    """Unpickling this would call `_record_exploit`: a stand-in for arbitrary code."""

    ran = False

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (_record_exploit, ())


def _record_exploit() -> None:
    _Exploit.ran = True


def test_malicious_pickle_is_never_unpickled(harness: Harness) -> None:
    payload = pickle.dumps({"state_dict": _Exploit()})
    with pytest.raises(InvalidCheckpoint, match="not a safetensors file"):
        harness.store.put_checkpoint(payload)
    assert not _Exploit.ran


@pytest.mark.parametrize(
    "digest",
    ["../../etc/passwd", "A" * 64, "a" * 63, "a" * 65, "/" + "a" * 63, "g" * 64, ""],
)
def test_keys_that_are_not_digests_are_refused(harness: Harness, digest: str) -> None:
    store = harness.store
    for call in (
        lambda: store.get_manifest(digest),
        lambda: store.has_manifest(digest),
        lambda: store.get_blob(digest),
        lambda: store.has_blob(digest),
        lambda: store.iter_blob(digest),
    ):
        with pytest.raises(InvalidDigest):
            call()
    assert issubclass(InvalidDigest, ValueError)


# blobs -------------------------------------------------------------------------------------


def test_blob_api(harness: Harness) -> None:
    payload = bytes(range(256)) * 9000  # > 2 chunks
    digest = harness.store.put_blob(payload)
    assert digest == hashlib.sha256(payload).hexdigest()
    assert harness.store.has_blob(digest)
    assert harness.store.get_blob(digest) == payload
    assert harness.store.put_blob(io.BytesIO(payload)) == digest
    assert b"".join(harness.store.iter_blob(digest)) == payload
    assert b"".join(harness.store.iter_blob(digest, 10, 20)) == payload[10:20]
    assert b"".join(harness.store.iter_blob(digest, len(payload) - 1)) == payload[-1:]
    with pytest.raises(ValueError):
        harness.store.iter_blob(digest, 0, len(payload) + 1)
    with pytest.raises(BlobNotFound):
        harness.store.iter_blob("f" * 64)

    harness.overwrite_blob(digest, payload[::-1])
    with pytest.raises(CorruptBlob):
        list(harness.store.iter_blob(digest))


def test_ping(harness: Harness) -> None:
    harness.store.ping()


# interrupted uploads -----------------------------------------------------------------------


class _SimulatedCrash(RuntimeError):
    pass


class _FailAfter:
    """A source that dies after `limit` bytes, like a worker killed mid-upload."""

    def __init__(self, inner: Any, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._served = 0

    def read(self, size: int | None = -1) -> bytes:
        data = self._inner.read(size)
        self._served += len(data)
        if self._served > self._limit:
            raise _SimulatedCrash(f"connection lost after {self._limit} bytes")
        return bytes(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._inner.seek(offset, whence))

    def tell(self) -> int:
        return int(self._inner.tell())

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass


@pytest.mark.parametrize("big_elements", [40_000, 1_600_000], ids=["single-put", "multipart"])
def test_interrupted_upload_leaves_nothing_referenced_and_retry_succeeds(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, big_elements: int
) -> None:
    tensors = tiny_model()
    tensors["backbone.big"] = np.linspace(0, 1, big_elements, dtype=np.float32)
    data = to_bytes(tensors, METADATA)
    big_digest = hashlib.sha256(tensors["backbone.big"].tobytes()).hexdigest()

    real_write = harness.store.backend.write_blob

    def crashing_write(digest: str, source: Any) -> None:
        if digest == big_digest:
            source = _FailAfter(source, tensors["backbone.big"].nbytes // 2)
        real_write(digest, source)

    monkeypatch.setattr(harness.store.backend, "write_blob", crashing_write)
    with pytest.raises(_SimulatedCrash):
        harness.store.put_checkpoint(data)

    assert not harness.store.has_blob(big_digest)
    assert [k for k in harness.stored_keys() if k.startswith("manifests/")] == []
    assert [k for k in harness.stored_keys() if big_digest in k] == []  # not even a temp file
    assert harness.pending_uploads() == []

    monkeypatch.setattr(harness.store.backend, "write_blob", real_write)
    put = harness.store.put_checkpoint(data)
    assert harness.store.has_blob(big_digest)
    assert harness.store.verify(put.manifest) == []
    assert put.new_bytes >= tensors["backbone.big"].nbytes
