"""Filesystem backend: one directory tree, atomic writes by temp file + fsync + rename."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from models_store.backends.base import Source, blob_key, is_digest, manifest_key, ref_key
from models_store.errors import BlobNotFound, StoreError

__all__ = ["FilesystemBackend"]


class FilesystemBackend:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().absolute()

    @property
    def url(self) -> str:
        return self.root.as_uri()

    def ping(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"store root {self.root} is not usable: {exc}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise StoreError(f"store root {self.root} is not writable")

    # blobs -----------------------------------------------------------------------------

    def _blob_path(self, digest: str) -> Path:
        return self.root / blob_key(digest)

    def blob_size(self, digest: str) -> int:
        try:
            return self._blob_path(digest).stat().st_size
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in {self.url}") from None

    def has_blob(self, digest: str) -> bool:
        return self._blob_path(digest).is_file()

    def read_blob(self, digest: str, start: int, end: int, chunk_size: int) -> Iterator[bytes]:
        try:
            handle = self._blob_path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in {self.url}") from None
        return _read_range(handle, start, end, chunk_size)

    def stream_blob(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        try:
            handle = self._blob_path(digest).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"blob {digest} is not in {self.url}") from None
        return _read_all(handle, chunk_size)

    def write_blob(self, digest: str, source: Source) -> None:
        _atomic_write(self._blob_path(digest), source)

    # manifests -------------------------------------------------------------------------

    def _manifest_path(self, sha256: str) -> Path:
        return self.root / manifest_key(sha256)

    def has_manifest(self, sha256: str) -> bool:
        return self._manifest_path(sha256).is_file()

    def read_manifest(self, sha256: str) -> bytes:
        try:
            return self._manifest_path(sha256).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"manifest {sha256} is not in {self.url}") from None

    def write_manifest(self, sha256: str, data: bytes) -> None:
        _atomic_write(self._manifest_path(sha256), io.BytesIO(data))

    # write-once records -------------------------------------------------------------------

    def write_record(self, key: str, data: bytes, *, retain_days: int = 0) -> bool:
        path = self.root / "records" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o444)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            raise
        _fsync_dir(path.parent)
        return True

    def read_record(self, key: str) -> bytes:
        try:
            return (self.root / "records" / key).read_bytes()
        except FileNotFoundError:
            raise BlobNotFound(f"record {key} is not in {self.url}") from None

    def list_records(self, prefix: str) -> list[str]:
        base = self.root / "records"
        folder = base / prefix
        if not folder.is_dir():
            return []
        return sorted(
            str(p.relative_to(base))
            for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")
        )

    # removal and listing ---------------------------------------------------------------

    def delete_blob(self, digest: str) -> None:
        self._blob_path(digest).unlink(missing_ok=True)

    def delete_manifest(self, sha256: str) -> None:
        self._manifest_path(sha256).unlink(missing_ok=True)

    def blob_digests(self) -> Iterator[str]:
        for path in (self.root / "blobs" / "sha256").glob("*/*"):
            if path.is_file() and is_digest(path.name):
                yield path.name

    def manifest_digests(self) -> Iterator[str]:
        for path in (self.root / "manifests").glob("*.json"):
            if is_digest(path.stem):
                yield path.stem

    # refs ------------------------------------------------------------------------------

    def read_ref(self, name: str) -> bytes | None:
        try:
            return (self.root / ref_key(name)).read_bytes()
        except FileNotFoundError:
            return None

    def write_ref(self, name: str, data: bytes) -> None:
        _atomic_write(self.root / ref_key(name), io.BytesIO(data))

    def ref_names(self, prefix: str) -> list[str]:
        folder = self.root / ref_key("")
        if not folder.is_dir():
            return []
        return sorted(
            p.name
            for p in folder.iterdir()
            if p.is_file() and p.name.startswith(prefix) and not p.name.startswith(".")
        )

    def delete_ref(self, name: str) -> None:
        (self.root / ref_key(name)).unlink(missing_ok=True)


def _read_range(handle: BinaryIO, start: int, end: int, chunk_size: int) -> Iterator[bytes]:
    with handle:
        handle.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = handle.read(min(chunk_size, remaining))
            if not chunk:
                raise StoreError(f"{handle.name} ended {remaining} bytes early")
            remaining -= len(chunk)
            yield chunk


def _read_all(handle: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(chunk_size):
            yield chunk


def _atomic_write(path: Path, source: Source) -> None:
    """Write to a temp file in the target directory, fsync, rename, fsync the directory.

    A crash at any point leaves either the old file or the complete new one at ``path``;
    at worst an orphan ``.tmp`` file next to it, which is never read.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as tmp:
            shutil.copyfileobj(source, tmp, 1024 * 1024)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
