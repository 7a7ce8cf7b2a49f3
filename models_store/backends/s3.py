"""S3 backend (boto3): any S3-compatible object store (AWS S3, MinIO, Ceph, moto).

Uploads go through the transfer manager (``upload_fileobj``): small blobs are one
PutObject, large ones a multipart upload. Either way S3 makes the object visible at its
key only when the upload completed (PutObject is atomic; a multipart object exists only
after CompleteMultipartUpload, and the transfer manager aborts the upload on failure), so
a crash mid-upload never leaves a partial blob at its final key. Downloads stream the
response body, with an HTTP ``Range`` header for partial reads.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from models_store.backends.base import Source, blob_key, is_digest, manifest_key, ref_key
from models_store.errors import BlobNotFound, StoreError

__all__ = ["S3Backend"]

log = logging.getLogger("lethe.store")
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
_MiB = 1024 * 1024

# Creating a client loads botocore's service models (~0.1 s); a shared session caches
# them. Sessions are not thread-safe, so clients are created under a lock; the clients
# themselves are thread-safe.
_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def _client(**kwargs: Any) -> Any:
    global _session
    with _session_lock:
        if _session is None:
            _session = boto3.session.Session()
        return _session.client("s3", **kwargs)


class S3Backend:
    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        multipart_threshold: int = 16 * _MiB,
        multipart_chunksize: int = 16 * _MiB,
        create_bucket: bool = False,
    ) -> None:
        if not bucket:
            raise ValueError("an S3 store URL needs a bucket: s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint = endpoint_url or "AWS S3"
        self.region = region
        self.create_bucket = create_bucket
        config = Config(
            connect_timeout=5,
            read_timeout=60,
            retries={"max_attempts": 3, "mode": "standard"},
            # Path-style addressing works with every S3-compatible server (MinIO, moto,
            # IP-address endpoints); AWS itself still accepts it.
            s3={"addressing_style": "path"} if endpoint_url else None,
        )
        self._client: Any = _client(
            endpoint_url=endpoint_url,
            region_name=region,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def _fail(self, exc: Exception, what: str) -> StoreError:
        if isinstance(exc, ClientError):
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in _NOT_FOUND:
                return BlobNotFound(f"{what} is not in {self.url}")
        return StoreError(f"S3 error on {what} in {self.url}: {exc}")

    def ping(self) -> None:
        """Check the bucket; create it when it is missing and `create_bucket` is set (as the
        filesystem backend creates its root). Errors name the bucket, endpoint and cause."""
        where = f"S3 bucket {self.bucket!r} at {self.endpoint}"
        try:
            self._client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in _NOT_FOUND and code != "NoSuchBucket":
                raise StoreError(f"{where} is not reachable: {exc}") from exc
            if not self.create_bucket:
                raise StoreError(
                    f"{where} does not exist; create it, or let Lethe create it "
                    "(LETHE_S3_CREATE_BUCKET=true)"
                ) from exc
        except BotoCoreError as exc:
            raise StoreError(f"{where} is not reachable: {exc}") from exc
        options: dict[str, Any] = {}
        if self.region and self.region != "us-east-1":  # us-east-1 takes no constraint
            options["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
        try:
            self._client.create_bucket(Bucket=self.bucket, **options)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise StoreError(f"{where} does not exist and creating it failed: {exc}") from exc
            if code == "BucketAlreadyExists":  # someone else's name: not ours to use
                raise StoreError(f"{where}: the name belongs to another account: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreError(f"{where} does not exist and creating it failed: {exc}") from exc
        log.warning("created the missing %s", where)

    def _head(self, key: str, what: str) -> int | None:
        try:
            response = self._client.head_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            error = self._fail(exc, what)
            if isinstance(error, BlobNotFound):
                return None
            raise error from exc
        return int(response["ContentLength"])

    # blobs -----------------------------------------------------------------------------

    def blob_size(self, digest: str) -> int:
        size = self._head(self._key(blob_key(digest)), f"blob {digest}")
        if size is None:
            raise BlobNotFound(f"blob {digest} is not in {self.url}")
        return size

    def has_blob(self, digest: str) -> bool:
        return self._head(self._key(blob_key(digest)), f"blob {digest}") is not None

    def read_blob(self, digest: str, start: int, end: int, chunk_size: int) -> Iterator[bytes]:
        if start == end:
            return iter(())
        what = f"blob {digest}"
        try:
            response = self._client.get_object(
                Bucket=self.bucket,
                Key=self._key(blob_key(digest)),
                Range=f"bytes={start}-{end - 1}",
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, what) from exc
        return self._stream(response["Body"], end - start, chunk_size, what)

    def stream_blob(self, digest: str, chunk_size: int) -> Iterator[bytes]:
        what = f"blob {digest}"
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(blob_key(digest)))
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, what) from exc
        return self._stream(response["Body"], None, chunk_size, what)

    def _stream(self, body: Any, length: int | None, chunk_size: int, what: str) -> Iterator[bytes]:
        received = 0
        try:
            for chunk in body.iter_chunks(chunk_size):
                received += len(chunk)
                yield chunk
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, what) from exc
        finally:
            body.close()
        if length is not None and received != length:
            raise StoreError(f"{what}: expected {length} bytes from {self.url}, got {received}")

    def write_blob(self, digest: str, source: Source) -> None:
        self._upload(self._key(blob_key(digest)), source, f"blob {digest}")

    def _upload(self, key: str, source: Source, what: str) -> None:
        try:
            self._client.upload_fileobj(source, self.bucket, key, Config=self._transfer)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, what) from exc

    # manifests -------------------------------------------------------------------------

    def has_manifest(self, sha256: str) -> bool:
        return self._head(self._key(manifest_key(sha256)), f"manifest {sha256}") is not None

    def read_manifest(self, sha256: str) -> bytes:
        what = f"manifest {sha256}"
        try:
            response = self._client.get_object(
                Bucket=self.bucket, Key=self._key(manifest_key(sha256))
            )
            with response["Body"] as body:
                data: bytes = body.read()
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, what) from exc
        return data

    def write_manifest(self, sha256: str, data: bytes) -> None:
        what = f"manifest {sha256}"
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(manifest_key(sha256)),
                Body=data,
                ContentType="application/json",
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, what) from exc

    # write-once records -------------------------------------------------------------------

    def write_record(self, key: str, data: bytes, *, retain_days: int = 0) -> bool:
        extra: dict[str, Any] = {}
        if retain_days > 0:  # needs a bucket created with Object Lock enabled
            extra["ObjectLockMode"] = "COMPLIANCE"
            extra["ObjectLockRetainUntilDate"] = datetime.now(UTC) + timedelta(days=retain_days)
        try:
            self._client.put_object(
                Bucket=self.bucket,
                Key=self._key(f"records/{key}"),
                Body=data,
                ContentType="application/json",
                IfNoneMatch="*",
                **extra,
            )
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "ConditionalRequestConflict", "412"):
                return False
            raise self._fail(exc, f"record {key}") from exc
        except BotoCoreError as exc:
            raise self._fail(exc, f"record {key}") from exc
        return True

    def read_record(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(f"records/{key}"))
            with response["Body"] as body:
                data: bytes = body.read()
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, f"record {key}") from exc
        return data

    def list_records(self, prefix: str) -> list[str]:
        base = self._key("records/")
        keys: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            )
            for page in pages:
                keys += [str(o["Key"])[len(base) :] for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, f"records {prefix}") from exc
        return sorted(keys)

    # removal and listing ---------------------------------------------------------------

    def _delete(self, key: str, what: str) -> None:
        try:
            self._client.delete_object(Bucket=self.bucket, Key=key)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, what) from exc

    def delete_blob(self, digest: str) -> None:
        self._delete(self._key(blob_key(digest)), f"blob {digest}")

    def delete_manifest(self, sha256: str) -> None:
        self._delete(self._key(manifest_key(sha256)), f"manifest {sha256}")

    def _names(self, folder: str, suffix: str) -> Iterator[str]:
        prefix = self._key(folder)
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    name = str(item["Key"]).rsplit("/", 1)[-1].removesuffix(suffix)
                    if is_digest(name):
                        yield name
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, f"listing {folder}") from exc

    def blob_digests(self) -> Iterator[str]:
        return self._names("blobs/sha256/", "")

    def manifest_digests(self) -> Iterator[str]:
        return self._names("manifests/", ".json")

    # refs ------------------------------------------------------------------------------

    def read_ref(self, name: str) -> bytes | None:
        what = f"ref {name}"
        if self._head(self._key(ref_key(name)), what) is None:
            return None
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(ref_key(name)))
            with response["Body"] as body:
                data: bytes = body.read()
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, what) from exc
        return data

    def write_ref(self, name: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._key(ref_key(name)), Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, f"ref {name}") from exc

    def ref_names(self, prefix: str) -> list[str]:
        base = self._key(ref_key(""))
        names: list[str] = []
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            )
            for page in pages:
                names += [str(o["Key"])[len(base) :] for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(exc, f"refs {prefix}") from exc
        return sorted(n for n in names if "/" not in n)

    def delete_ref(self, name: str) -> None:
        self._delete(self._key(ref_key(name)), f"ref {name}")
