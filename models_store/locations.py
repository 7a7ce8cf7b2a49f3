"""Where a dataset by reference stays: a folder here or an S3 prefix (the configured
endpoint and credentials). Both read byte ranges and list files, and are picklable so the
engine's DataLoader worker processes read in parallel (the S3 client is made per process).
The engine sees them through its ``unlearning.sources.Location`` protocol.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["S3Location", "open_location"]


class S3Location:
    """``s3://bucket/prefix``: reads are ranged GETs below the prefix, never above it."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._config = {
            "endpoint_url": endpoint_url,
            "region_name": region,
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
        }
        self._client: Any = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_client"] = None
        return state

    def _s3(self) -> Any:
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", **self._config)
        return self._client

    def _key(self, path: str) -> str:
        parts = [p for p in path.split("/") if p]
        if not parts or any(p in (".", "..") for p in parts):
            raise ValueError(f"{path!r} is not a path below the dataset location")
        return "/".join([self.prefix, *parts]) if self.prefix else "/".join(parts)

    def read(self, path: str, start: int = 0, length: int = -1) -> bytes:
        args: dict[str, Any] = {"Bucket": self.bucket, "Key": self._key(path)}
        if start or length >= 0:
            end = "" if length < 0 else str(start + length - 1)
            args["Range"] = f"bytes={start}-{end}"
        try:
            response = self._s3().get_object(**args)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code")
            if code in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"s3://{self.bucket}/{args['Key']}") from None
            raise
        with response["Body"] as body:
            data: bytes = body.read()
        return data

    def list(self) -> list[str]:
        base = f"{self.prefix}/" if self.prefix else ""
        out = []
        for page in (
            self._s3().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base)
        ):
            out += [obj["Key"][len(base) :] for obj in page.get("Contents", [])]
        return sorted(out)

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def open_location(
    url: str,
    *,
    s3_endpoint_url: str | None = None,
    s3_region: str | None = None,
    s3_access_key_id: str | None = None,
    s3_secret_access_key: str | None = None,
) -> S3Location:
    """``s3://bucket/prefix`` -> ``S3Location`` (a folder is the engine's ``LocalLocation``)."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        return S3Location(
            parts.netloc,
            parts.path,
            endpoint_url=s3_endpoint_url,
            region=s3_region,
            access_key_id=s3_access_key_id,
            secret_access_key=s3_secret_access_key,
        )
    raise ValueError(f"unsupported location {url!r}: use s3://bucket/prefix or a folder")
