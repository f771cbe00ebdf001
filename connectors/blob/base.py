"""The blob store contract: where media bytes live (audio chunks, camera frames).

Two backends implement it (:mod:`connectors.blob.filesystem`, :mod:`connectors.blob.s3`), chosen
by ``FLEET_BLOB__BACKEND``; :func:`connectors.blob.factory.open_blob_store` builds one.

Contract of :meth:`BlobStore.put`, the only write:

* **streamed**: the bytes come from an async iterable and are never all in memory (the S3
  backend holds at most one multipart part);
* **bounded**: past ``max_bytes`` the write is abandoned and :class:`BlobTooLarge` raised; then,
  as after any other failure or a cancellation, nothing of the object remains (no partial file,
  no half-finished upload);
* **checksummed**: the SHA-256 is computed while the bytes stream through and returned;
* **atomic and durable**: the object appears under its key only complete, and only once it is
  durable (file: temp name, fsync, rename, fsync of the folder; S3: a finished PUT or completed
  multipart upload). So a caller may announce the object (row, Kafka event) as soon as ``put``
  returned, and must not before.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import ClassVar

from connectors.blob.errors import BlobTooLarge, InvalidKey

_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=-]{0,199}")
MAX_KEY_LENGTH = 1024


@dataclass(frozen=True)
class StoredBlob:
    """A durable object: its key, size and SHA-256 (hex)."""

    key: str
    size: int
    sha256: str
    content_type: str


def check_key(key: str) -> str:
    """``key`` if it is '/'-separated segments of ``[A-Za-z0-9_.:=-]`` each starting with a
    letter or digit (so never '..', never absolute), else :class:`InvalidKey`."""
    segments = key.split("/")
    if len(key) > MAX_KEY_LENGTH or not all(_SEGMENT.fullmatch(part) for part in segments):
        raise InvalidKey(f"not a valid object key: {key[:200]!r}")
    return key


class Digest:
    """Counts and hashes the bytes of one object as they pass; enforces the size limit."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._sha = hashlib.sha256()

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise BlobTooLarge(self.max_bytes)
        self._sha.update(chunk)

    @property
    def hexdigest(self) -> str:
        return self._sha.hexdigest()


class BlobStore(ABC):
    """One place where objects live; ``open`` before use, ``close`` once."""

    backend: ClassVar[str]

    async def open(self) -> None:  # noqa: B027 - optional hook
        """Connect / create what is missing (a bucket, the root folder)."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    @abstractmethod
    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
    ) -> StoredBlob:
        """Store ``chunks`` under ``key`` (see the module docstring for the guarantees)."""

    @abstractmethod
    def get(self, key: str) -> AsyncIterator[bytes]:
        """The object's bytes, in chunks; :class:`BlobNotFound` when there is none."""

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Remove the object (no error when it is already gone)."""

    @abstractmethod
    async def size_of(self, key: str) -> int | None:
        """The stored size of ``key``, or None when there is no such object."""

    @abstractmethod
    async def ping(self) -> bool:
        """True when the store takes requests now (readiness); never raises."""

    def describe(self, key: str) -> str:
        """Where ``key`` lives, for people (a path or an s3:// URL)."""
        return key
