"""The model store: safetensors checkpoints as content-addressed tensor blobs.

``put_checkpoint`` splits a safetensors file into one blob per tensor (key: sha256 of
the tensor's raw bytes) and writes a manifest keyed by the sha256 of the canonical
file those tensors assemble into. Blobs already stored are not written again, so a
version that changed only its classifier head costs only the head's bytes.

Reads are verified: every blob is hashed as it is read, and bytes are handed to the
caller only after the blob they belong to has been checked against its digest. A blob is
buffered (in memory up to ``SPOOL_BYTES``, then in a temporary file) while it is checked,
so the caller never sees bytes of a corrupt blob; the price is that a range that touches
part of a blob reads and hashes that whole blob (blobs are single tensors, so this is
bounded by the largest tensor). ``iter_blob`` on a sub-range of one blob is the one
unverified read: it fetches only the requested bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, BinaryIO
from urllib.parse import unquote, urlsplit

from models_store.backends.base import Backend
from models_store.backends.filesystem import FilesystemBackend
from models_store.backends.s3 import S3Backend
from models_store.digests import CHUNK_SIZE, SliceReader, check_digest
from models_store.errors import BlobNotFound, CorruptBlob, InvalidCheckpoint, StoreError
from models_store.manifest import CheckpointManifest, PutResult, TensorEntry, build_header
from models_store.safetensors_format import (
    HeaderTensor,
    canonical_order,
    parse_header,
    read_header_length,
)

__all__ = ["SPOOL_BYTES", "ModelStore", "Removal", "open_store"]

#: Blobs up to this size are verified in memory; larger ones spill to a temporary file.
SPOOL_BYTES = 8 * 1024 * 1024


def open_store(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
    s3_create_bucket: bool = False,
) -> ModelStore:
    """Open the store at ``file:///abs/path``, a plain path, or ``s3://bucket/prefix``.

    Nothing is contacted or created here; call ``ping()`` to check the store is usable
    (which creates a missing filesystem root, and a missing bucket if
    ``s3_create_bucket``).
    """
    parts = urlsplit(url)
    if parts.scheme == "s3":
        backend: Backend = S3Backend(
            parts.netloc,
            unquote(parts.path),
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            access_key_id=s3_access_key_id,
            secret_access_key=s3_secret_access_key,
            create_bucket=s3_create_bucket,
        )
    elif parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError(f"file URLs must name a local path (file:///abs/path): {url!r}")
        backend = FilesystemBackend(unquote(parts.path))
    elif parts.scheme == "" or (len(parts.scheme) == 1 and os.name == "nt"):
        if not url:
            raise ValueError("empty store URL")
        backend = FilesystemBackend(url)
    else:
        raise ValueError(f"unsupported store URL {url!r}: use file:///path, a path or s3://")
    return ModelStore(backend)


@dataclass(frozen=True)
class Removal:
    """What a deletion removed (or, on a dry run, would remove)."""

    manifests: list[str]
    blobs: list[str]
    bytes: int


class ModelStore:
    """Checkpoints and blobs on one backend. Safe to share between threads."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    @property
    def url(self) -> str:
        return self.backend.url

    def __repr__(self) -> str:
        return f"ModelStore({self.url!r})"

    def ping(self) -> None:
        """Raise StoreError unless the store is reachable (for /readyz)."""
        try:
            self.backend.ping()
        except StoreError:
            raise
        except Exception as exc:
            raise StoreError(f"store {self.url} is not usable: {exc}") from exc

    # checkpoints -----------------------------------------------------------------------

    def put_checkpoint(self, data: bytes | BinaryIO) -> PutResult:
        """Store a safetensors checkpoint; return its manifest and what it cost.

        The file is validated by its header before anything is written (an invalid file
        raises InvalidCheckpoint and stores nothing). Blobs are written first, the
        manifest last, so a manifest never references a blob that is not fully stored.
        A file object is read from its current position to its end.
        """
        with ExitStack() as stack:
            source = _seekable(data, stack)
            base = source.tell()
            total = source.seek(0, io.SEEK_END) - base
            source.seek(base)
            prefix = source.read(16)
            n = read_header_length(prefix, total)
            source.seek(base + 8)
            raw_header = source.read(n)
            parsed = parse_header(raw_header, total - 8 - n)
            data_start = base + 8 + n

            ordered = canonical_order(parsed.tensors)
            header = build_header(
                parsed.metadata,
                tuple(TensorEntry(t.name, t.dtype, t.shape, "", t.length) for t in ordered),
            )
            file_hash = hashlib.sha256(header)
            lock = threading.Lock()
            entries: list[TensorEntry] = []
            slices: dict[str, SliceReader] = {}
            for tensor in ordered:
                reader = SliceReader(source, data_start + tensor.begin, tensor.length, lock)
                digest = _hash_tensor(reader, tensor, file_hash)
                entries.append(
                    TensorEntry(tensor.name, tensor.dtype, tensor.shape, digest, tensor.length)
                )
                slices.setdefault(digest, reader)

            manifest = CheckpointManifest(
                sha256=file_hash.hexdigest(),
                size=len(header) + parsed.data_length,
                metadata=parsed.metadata,
                tensors=tuple(entries),
            )
            new_bytes = 0
            for digest, reader in slices.items():
                if not self.backend.has_blob(digest):
                    reader.seek(0)
                    self.backend.write_blob(digest, reader)
                    new_bytes += reader.seek(0, io.SEEK_END)
            if not self.backend.has_manifest(manifest.sha256):
                self.backend.write_manifest(manifest.sha256, manifest.to_json())
            return PutResult(manifest=manifest, new_bytes=new_bytes, total_bytes=manifest.size)

    def has_manifest(self, sha256: str) -> bool:
        return self.backend.has_manifest(check_digest(sha256))

    def get_manifest(self, sha256: str) -> CheckpointManifest:
        """The manifest of the checkpoint whose assembled file has this sha256."""
        raw = self.backend.read_manifest(check_digest(sha256))
        return CheckpointManifest.from_json(raw, expected_sha256=sha256)

    def open_checkpoint(
        self, manifest: CheckpointManifest, start: int = 0, end: int | None = None
    ) -> Iterator[bytes]:
        """Stream the assembled safetensors file, or its bytes ``[start, end)``.

        Arguments are checked now (ValueError for a range outside ``[0, size]``); blob
        errors (BlobNotFound, CorruptBlob, StoreError) surface while iterating, before
        any byte of the faulty blob is yielded.
        """
        end = _check_range(start, end, manifest.size)
        return self._assemble(manifest, start, end)

    def _assemble(self, manifest: CheckpointManifest, start: int, end: int) -> Iterator[bytes]:
        header = manifest.header
        if start < len(header):
            yield header[start : min(end, len(header))]
        for offset, tensor in manifest.segments():
            lo, hi = max(start, offset), min(end, offset + tensor.length)
            if lo >= hi:
                if offset >= end:
                    break
                continue
            yield from self._verified_slice(tensor.digest, tensor.length, lo - offset, hi - offset)

    def read_checkpoint(self, manifest: CheckpointManifest) -> bytes:
        """The whole assembled file in memory, checked against ``manifest.sha256``."""
        data = b"".join(self.open_checkpoint(manifest))
        if hashlib.sha256(data).hexdigest() != manifest.sha256:
            raise CorruptBlob(f"checkpoint {manifest.sha256} does not assemble to its sha256")
        return data

    def verify(self, manifest: CheckpointManifest) -> list[str]:
        """Re-hash every blob of a checkpoint; return the problems found ([] when sound)."""
        problems: list[str] = []
        file_hash = hashlib.sha256(manifest.header)
        for _, tensor in manifest.segments():
            try:
                size = self.backend.blob_size(tensor.digest)
            except BlobNotFound:
                problems.append(f"tensor {tensor.name!r}: blob {tensor.digest} is missing")
                continue
            if size != tensor.length:
                problems.append(
                    f"tensor {tensor.name!r}: blob {tensor.digest} is {size} bytes,"
                    f" expected {tensor.length}"
                )
                continue
            blob_hash = hashlib.sha256()
            for chunk in self.backend.stream_blob(tensor.digest, CHUNK_SIZE):
                blob_hash.update(chunk)
                file_hash.update(chunk)
            if blob_hash.hexdigest() != tensor.digest:
                problems.append(
                    f"tensor {tensor.name!r}: blob {tensor.digest} is corrupt"
                    f" (its bytes hash to {blob_hash.hexdigest()})"
                )
        if not problems and file_hash.hexdigest() != manifest.sha256:
            problems.append(
                f"assembled file hashes to {file_hash.hexdigest()}, manifest says {manifest.sha256}"
            )
        return problems

    # removal ---------------------------------------------------------------------------

    def delete_checkpoints(self, remove: Iterable[str], keep: Iterable[str]) -> Removal:
        """Delete the manifests in `remove` and every blob they reference that no manifest
        in `keep` references (a head-only version loses its head, never the backbone it
        shares). A sha256 in both is kept. Absent manifests are skipped."""
        kept = set(keep)
        shared = {t.digest for sha in kept for t in self._tensors(sha)}
        doomed = set(remove) - kept
        blobs = {t.digest for sha in doomed for t in self._tensors(sha)} - shared
        freed = 0
        for digest in sorted(blobs):
            if self.backend.has_blob(digest):
                freed += self.backend.blob_size(digest)
                self.backend.delete_blob(digest)
        for sha in sorted(doomed):
            self.backend.delete_manifest(sha)
        return Removal(manifests=sorted(doomed), blobs=sorted(blobs), bytes=freed)

    def gc(self, *, keep_blobs: Iterable[str] = (), dry_run: bool = False) -> Removal:
        """Delete blobs that no stored manifest and no ref references and that are not in
        `keep_blobs` (blobs the caller's records use directly, such as training sets):
        what a put that crashed after its blobs and before its manifest left behind.
        Run it while no put is under way: a put writes its manifest last."""
        referenced = set(keep_blobs)
        for name in self.list_refs(""):  # e.g. the shared feature tables, refs/features-*
            try:
                digest = self.get_ref(name)
            except ValueError:  # not a ref this store wrote (a stray file): points nowhere
                continue
            if digest is not None:
                referenced.add(digest)
        for sha in self.backend.manifest_digests():
            referenced.update(t.digest for t in self._tensors(sha))
        orphans = sorted(set(self.backend.blob_digests()) - referenced)
        freed = 0
        for digest in orphans:
            freed += self.backend.blob_size(digest)
            if not dry_run:
                self.backend.delete_blob(digest)
        return Removal(manifests=[], blobs=orphans, bytes=freed)

    def _tensors(self, sha256: str) -> tuple[TensorEntry, ...]:
        try:
            return CheckpointManifest.from_json(self.backend.read_manifest(sha256)).tensors
        except BlobNotFound:
            return ()

    # blobs -----------------------------------------------------------------------------

    def put_blob(self, data: bytes | BinaryIO) -> str:
        """Store arbitrary bytes under their sha256 and return the digest."""
        with ExitStack() as stack:
            source = _seekable(data, stack)
            base = source.tell()
            hasher = hashlib.sha256()
            while chunk := source.read(CHUNK_SIZE):
                hasher.update(chunk)
            digest = hasher.hexdigest()
            if not self.backend.has_blob(digest):
                length = source.tell() - base
                self.backend.write_blob(digest, SliceReader(source, base, length))
            return digest

    # write-once records (signed audit checkpoints) ---------------------------------------

    def put_record(self, key: str, data: bytes, *, retain_days: int = 0) -> bool:
        """Write ``data`` under ``key`` once; False, writing nothing, if the key exists."""
        return self.backend.write_record(_record_key(key), data, retain_days=retain_days)

    def get_record(self, key: str) -> bytes:
        return self.backend.read_record(_record_key(key))

    def list_records(self, prefix: str) -> list[str]:
        return self.backend.list_records(_record_key(prefix))

    def has_blob(self, digest: str) -> bool:
        return self.backend.has_blob(check_digest(digest))

    # refs ------------------------------------------------------------------------------

    def get_ref(self, name: str) -> str | None:
        """The blob digest a named pointer holds, or None."""
        raw = self.backend.read_ref(_ref_name(name))
        return None if raw is None else check_digest(raw.decode("ascii").strip())

    def put_ref(self, name: str, digest: str) -> None:
        """Point ``name`` at a stored blob (written after the blob, so never dangling)."""
        if not self.has_blob(digest):
            raise BlobNotFound(f"blob {digest} is not in {self.url}")
        self.backend.write_ref(_ref_name(name), digest.encode("ascii"))

    def list_refs(self, prefix: str) -> list[str]:
        """Names of the refs starting with ``prefix``, sorted."""
        return self.backend.ref_names(prefix)

    def delete_ref(self, name: str) -> None:
        """Remove a named pointer (absent: nothing happens); its blob stays."""
        self.backend.delete_ref(_ref_name(name))

    def delete_blob(self, digest: str) -> None:
        """Remove one blob (absent: nothing happens). The caller knows nothing refers to it:
        a manifest's tensors are removed with ``delete_checkpoints``, never one by one."""
        self.backend.delete_blob(check_digest(digest))

    def get_blob(self, digest: str) -> bytes:
        """A whole blob, verified (CorruptBlob when its bytes do not match the digest)."""
        return b"".join(self.iter_blob(digest))

    def iter_blob(self, digest: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream a blob or its bytes ``[start, end)``.

        A whole blob is verified before its first byte is yielded (CorruptBlob when it
        does not match its digest). A partial range is fetched with a ranged read and
        served as stored, unverified: use ``open_checkpoint`` for verified ranges.
        """
        size = self.backend.blob_size(check_digest(digest))
        end = _check_range(start, end, size)
        if start == 0 and end == size:
            return self._verified_slice(digest, size, 0, size)
        return self.backend.read_blob(digest, start, end, CHUNK_SIZE)

    def _verified_slice(self, digest: str, length: int, lo: int, hi: int) -> Iterator[bytes]:
        """Bytes ``[lo, hi)`` of a blob, yielded only after the whole blob was verified."""
        hasher = hashlib.sha256()
        received = 0
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            for chunk in self.backend.stream_blob(digest, CHUNK_SIZE):
                received += len(chunk)
                if received > length:
                    raise CorruptBlob(f"blob {digest} is corrupt: longer than {length} bytes")
                hasher.update(chunk)
                spool.write(chunk)
            if received != length or hasher.hexdigest() != digest:
                raise CorruptBlob(
                    f"blob {digest} is corrupt: {received} bytes hashing to"
                    f" {hasher.hexdigest()} (expected {length} bytes)"
                )
            spool.seek(lo)
            remaining = hi - lo
            while remaining > 0:
                chunk = spool.read(min(CHUNK_SIZE, remaining))
                if not chunk:  # pragma: no cover - the spool holds `length` bytes
                    raise StoreError(f"blob {digest}: spool ended early")
                remaining -= len(chunk)
                yield chunk


_REF = re.compile(r"^[a-z0-9][a-z0-9._-]{0,200}$")


def _ref_name(name: str) -> str:
    if not _REF.match(name):
        raise ValueError(f"invalid ref name {name!r}")
    return name


def _check_range(start: int, end: int | None, size: int) -> int:
    if end is None:
        end = size
    for name, value in (("start", start), ("end", end)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not 0 <= start <= end <= size:
        raise ValueError(f"byte range [{start}, {end}) is outside [0, {size}]")
    return end


def _seekable(data: bytes | BinaryIO, stack: ExitStack) -> IO[bytes]:
    """A seekable file for ``data``: itself if already seekable, else a spooled copy."""
    if isinstance(data, bytes | bytearray | memoryview):
        return io.BytesIO(data)
    if data.seekable():
        return data
    spool = stack.enter_context(tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES))  # noqa: SIM115
    while chunk := data.read(CHUNK_SIZE):
        spool.write(chunk)
    spool.seek(0)
    return spool


def _hash_tensor(reader: SliceReader, tensor: HeaderTensor, file_hash: hashlib._Hash) -> str:
    hasher = hashlib.sha256()
    remaining = tensor.length
    while remaining > 0:
        chunk = reader.read(min(CHUNK_SIZE, remaining))
        if not chunk:
            raise InvalidCheckpoint(
                f"truncated safetensors file: tensor {tensor.name!r} ends early"
            )
        hasher.update(chunk)
        file_hash.update(chunk)
        remaining -= len(chunk)
    return hasher.hexdigest()


def _record_key(key: str) -> str:
    parts = key.split("/")
    if not key or any(
        p in ("", ".", "..") or not p.replace("-", "").replace("_", "").replace(".", "").isalnum()
        for p in parts
    ):
        raise ValueError(f"not a record key: {key!r}")
    return key
