"""Build the blob store that ``FLEET_BLOB__BACKEND`` names."""

from __future__ import annotations

from connectors.blob.base import BlobStore
from connectors.blob.filesystem import FilesystemBlobStore
from connectors.blob.s3 import S3BlobStore
from schemas.settings import BlobSettings


def blob_store(settings: BlobSettings) -> BlobStore:
    """An unopened store; call ``await store.open()`` before use and ``close()`` after."""
    if settings.backend == "s3":
        return S3BlobStore(settings)
    return FilesystemBlobStore(settings.root)
