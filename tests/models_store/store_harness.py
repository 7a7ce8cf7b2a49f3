"""The contract suite's view of a store: the store plus backdoors to damage and inspect it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models_store import ModelStore
from models_store.backends.base import blob_key

MiB = 1024 * 1024
CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"


@dataclass
class Harness:
    """A store plus the backdoors a test needs to damage and inspect what is stored."""

    kind: str
    store: ModelStore
    root: Path | None = None
    client: Any = None
    bucket: str = ""
    prefix: str = ""

    def _key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def overwrite_blob(self, digest: str, data: bytes) -> None:
        if self.root is not None:
            (self.root / blob_key(digest)).write_bytes(data)
        else:
            self.client.put_object(Bucket=self.bucket, Key=self._key(blob_key(digest)), Body=data)

    def delete_blob(self, digest: str) -> None:
        if self.root is not None:
            (self.root / blob_key(digest)).unlink()
        else:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(blob_key(digest)))

    def stored_keys(self) -> list[str]:
        """Every stored object, relative to the store root (temp files included)."""
        if self.root is not None:
            if not self.root.exists():
                return []
            return sorted(
                str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file()
            )
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for item in page.get("Contents", []):
                key = item["Key"]
                keys.append(key[len(self.prefix) + 1 :] if self.prefix else key)
        return sorted(keys)

    def pending_uploads(self) -> list[str]:
        """Incomplete multipart uploads (always [] on the filesystem)."""
        if self.client is None:
            return []
        response = self.client.list_multipart_uploads(Bucket=self.bucket)
        return [upload["Key"] for upload in response.get("Uploads", [])]
