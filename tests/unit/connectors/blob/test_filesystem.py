"""The filesystem blob store: atomic, checksummed, bounded writes (in a temp folder)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from connectors.blob.errors import BlobNotFound, BlobTooLarge, InvalidKey
from connectors.blob.filesystem import FilesystemBlobStore


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


async def _store(tmp_path: Path) -> FilesystemBlobStore:
    store = FilesystemBlobStore(tmp_path / "blobs")
    await store.open()
    return store


async def test_put_stores_the_bytes_under_the_key_with_size_and_sha256(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    parts = [os.urandom(1000), os.urandom(70_000), b"end"]
    stored = await store.put("audio/a/b/c.ogg", _chunks(*parts), max_bytes=100_000)
    data = b"".join(parts)
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert (store.root / "audio/a/b/c.ogg").read_bytes() == data
    assert _files(store.root) == ["audio/a/b/c.ogg"]  # no temp file left
    assert b"".join([chunk async for chunk in store.get("audio/a/b/c.ogg")]) == data
    assert await store.size_of("audio/a/b/c.ogg") == len(data)


async def test_too_large_leaves_nothing_and_writes_no_byte_past_the_limit(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    with pytest.raises(BlobTooLarge):
        await store.put("x/big.bin", _chunks(b"a" * 600, b"b" * 600), max_bytes=1000)
    assert _files(store.root) == []
    assert await store.size_of("x/big.bin") is None


async def test_an_object_exactly_at_the_limit_is_stored(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    stored = await store.put("x/edge.bin", _chunks(b"a" * 1000), max_bytes=1000)
    assert stored.size == 1000


async def test_a_failing_source_leaves_no_partial_file(tmp_path: Path) -> None:
    store = await _store(tmp_path)

    async def broken() -> AsyncIterator[bytes]:
        yield b"first half"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put("x/half.bin", broken(), max_bytes=1000)
    assert _files(store.root) == []


async def test_a_cancelled_write_leaves_no_partial_file(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"some bytes"
        started.set()
        await asyncio.Event().wait()  # never more
        yield b""  # pragma: no cover

    task = asyncio.create_task(store.put("x/slow.bin", slow(), max_bytes=1000))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _files(store.root) == []


async def test_the_object_appears_only_complete(tmp_path: Path) -> None:
    """While the bytes stream in, the key does not exist yet (only a dot-named temp file)."""
    store = await _store(tmp_path)
    seen_during_write: list[int | None] = []

    async def watching() -> AsyncIterator[bytes]:
        yield b"x" * 100
        await asyncio.sleep(0)
        seen_during_write.append(await store.size_of("x/atomic.bin"))
        yield b"y" * 100

    await store.put("x/atomic.bin", watching(), max_bytes=1000)
    assert seen_during_write == [None]
    assert await store.size_of("x/atomic.bin") == 200


@pytest.mark.parametrize(
    "key", ["../escape", "/abs/path", "a//b", "a/../b", "a/.hidden", "", "a/b c", "a/\x00"]
)
async def test_keys_outside_the_root_or_odd_are_refused(tmp_path: Path, key: str) -> None:
    store = await _store(tmp_path)
    with pytest.raises(InvalidKey):
        await store.put(key, _chunks(b"x"), max_bytes=10)
    assert _files(tmp_path) == []


async def test_get_of_a_missing_key_and_delete_twice(tmp_path: Path) -> None:
    store = await _store(tmp_path)
    with pytest.raises(BlobNotFound):
        [chunk async for chunk in store.get("no/such.bin")]
    await store.put("x/y.bin", _chunks(b"1"), max_bytes=10)
    await store.delete("x/y.bin")
    await store.delete("x/y.bin")
    assert await store.size_of("x/y.bin") is None
