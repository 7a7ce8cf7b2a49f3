"""Storage backends: a filesystem tree and S3-compatible object stores."""

from models_store.backends.base import Backend
from models_store.backends.filesystem import FilesystemBackend
from models_store.backends.s3 import S3Backend

__all__ = ["Backend", "FilesystemBackend", "S3Backend"]
