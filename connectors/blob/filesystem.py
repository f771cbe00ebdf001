"""The blob store on a local filesystem: ``<root>/<key>``, written atomically.

``put`` streams into ``.<name>.<random>.part`` beside the final file (same folder, so the
rename cannot cross filesystems; the leading dot keeps it from ever being a valid key), then
flushes, fsyncs, renames it over the final name and fsyncs the folder, so after ``put`` the
object survives a power cut. Any failure or cancellation closes and removes the temp file.
Blocking file calls run in worker threads. A process killed mid-write can leave a ``.part``
file behind; its name is never a valid key, so no read ever returns it.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import BinaryIO

from connectors.blob.base import BlobStore, Digest, StoredBlob, check_key
from connectors.blob.errors import BlobNotFound, BlobStoreUnavailable

READ_CHUNK = 256 * 1024
TEMP_SUFFIX = ".part"


class FilesystemBlobStore(BlobStore):
    backend = "filesystem"

    def __init__(self, root: Path) -> None:
        self.root = root

    async def open(self) -> None:
        try:
            await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot create {self.root}: {exc}") from exc

    def path_of(self, key: str) -> Path:
        return self.root / check_key(key)

    def describe(self, key: str) -> str:
        return str(self.path_of(key))

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
    ) -> StoredBlob:
        path = self.path_of(key)
        temp = path.with_name(f".{path.name}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
        digest = Digest(max_bytes)
        try:
            handle = await asyncio.to_thread(_create, temp)
        except OSError as exc:
            raise BlobStoreUnavailable(f"cannot create {temp}: {exc}") from exc
        try:
            async for chunk in chunks:
                digest.update(chunk)  # BlobTooLarge before the byte past the limit is written
                await _disk(path, handle.write, chunk)
            await _disk(path, _commit, handle, temp, path)
        except BaseException:
            _discard(handle, temp)
            raise
        return StoredBlob(key, digest.size, digest.hexdigest, content_type)

    async def get(self, key: str) -> AsyncIterator[bytes]:
        path = self.path_of(key)
        try:
            handle = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError as exc:
            raise BlobNotFound(key) from exc
        try:
            while chunk := await asyncio.to_thread(handle.read, READ_CHUNK):
                yield chunk
        finally:
            handle.close()

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_of(key).unlink, missing_ok=True)

    async def size_of(self, key: str) -> int | None:
        try:
            stat = await asyncio.to_thread(self.path_of(key).stat)
        except FileNotFoundError:
            return None
        return stat.st_size

    async def ping(self) -> bool:
        return await asyncio.to_thread(os.access, self.root, os.W_OK)


async def _disk(path: Path, call: Callable[..., object], *args: object) -> None:
    """Run a blocking file call in a thread; its OSError (disk full, ...) means the store
    failed, unlike an error of the source the bytes come from."""
    try:
        await asyncio.to_thread(call, *args)
    except OSError as exc:
        raise BlobStoreUnavailable(f"writing {path} failed: {exc}") from exc


def _create(temp: Path) -> BinaryIO:
    temp.parent.mkdir(parents=True, exist_ok=True)
    return temp.open("xb")


def _commit(handle: BinaryIO, temp: Path, path: Path) -> None:
    handle.flush()
    os.fsync(handle.fileno())
    handle.close()
    temp.replace(path)
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def _discard(handle: BinaryIO, temp: Path) -> None:
    handle.close()
    temp.unlink(missing_ok=True)
