"""Errors of the blob store; ``retriable`` tells callers whether trying again can help."""

from __future__ import annotations

from schemas.errors import FleetError


class BlobError(FleetError):
    """Root of the blob store's errors."""


class BlobTooLarge(BlobError):
    """The object passed its size limit while it streamed in; nothing of it was kept."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the object is larger than {limit} bytes")
        self.limit = limit


class BlobStoreUnavailable(BlobError):
    """The store did not take the write (disk full, server down, refused credentials)."""

    retriable = True


class BlobNotFound(BlobError):
    def __init__(self, key: str) -> None:
        super().__init__(f"no object {key}")
        self.key = key


class InvalidKey(BlobError):
    """A key that is not a relative path of safe segments (no '..', no leading '/')."""
