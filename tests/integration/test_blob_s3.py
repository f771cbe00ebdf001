"""The S3 blob store against a real S3-compatible server (the stack's S3Proxy)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from connectors.blob.errors import BlobNotFound, BlobStoreUnavailable, BlobTooLarge
from connectors.blob.s3 import S3BlobStore
from schemas.settings import MIB, Settings
from tests.support import wait_until

PART = 5 * MIB


async def _chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.fixture
async def store(stack_settings: Settings) -> AsyncIterator[S3BlobStore]:
    blob = stack_settings.blob.model_copy(
        update={"s3_bucket": f"test-{uuid.uuid4().hex[:12]}", "s3_part_bytes": PART}
    )
    opened = S3BlobStore(blob)
    await opened.open()  # creates the bucket
    yield opened
    await opened.close()


async def _pending_uploads(store: S3BlobStore) -> list[object]:
    listed = await store._require().list_multipart_uploads(Bucket=store.bucket)
    return list(listed.get("Uploads", []))


async def test_small_and_multipart_objects_round_trip_with_their_sha256(
    store: S3BlobStore,
) -> None:
    for size in (10, 2 * PART + 123):  # one PUT; a three-part multipart upload
        data = os.urandom(size)
        key = f"t/{uuid.uuid4()}.bin"
        stored = await store.put(key, _chunks(data), max_bytes=size, content_type="image/png")
        assert (stored.size, stored.sha256) == (size, hashlib.sha256(data).hexdigest())
        assert await store.size_of(key) == size
        assert b"".join([chunk async for chunk in store.get(key)]) == data
        head = await store._require().head_object(Bucket=store.bucket, Key=key)
        assert head["ContentType"] == "image/png"
    assert await _pending_uploads(store) == []


async def test_an_oversized_object_leaves_no_object_and_no_pending_upload(
    store: S3BlobStore,
) -> None:
    key = f"t/{uuid.uuid4()}.bin"
    with pytest.raises(BlobTooLarge):
        await store.put(key, _chunks(os.urandom(2 * PART + 1)), max_bytes=PART + PART // 2)
    assert await store.size_of(key) is None
    assert await _pending_uploads(store) == []  # the started multipart upload was aborted


async def test_a_cancelled_upload_is_aborted(store: S3BlobStore) -> None:
    key = f"t/{uuid.uuid4()}.bin"
    sent_a_part = asyncio.Event()

    async def stalls() -> AsyncIterator[bytes]:
        yield os.urandom(PART + 1)  # one part goes up, the upload is open
        sent_a_part.set()
        await asyncio.Event().wait()
        yield b""  # pragma: no cover

    task = asyncio.create_task(store.put(key, stalls(), max_bytes=10 * PART))
    await sent_a_part.wait()

    async def part_uploaded() -> bool:
        return len(await _pending_uploads(store)) == 1

    await wait_until(part_uploaded, timeout_s=15, what="the first part to be uploaded")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _pending_uploads(store) == []
    assert await store.size_of(key) is None


async def test_missing_objects_and_a_wrong_secret(store: S3BlobStore) -> None:
    with pytest.raises(BlobNotFound):
        [chunk async for chunk in store.get("no/such/key.bin")]
    await store.delete("no/such/key.bin")  # deleting nothing is fine
    wrong = S3BlobStore(
        store.settings.model_copy(update={"s3_secret_key": SecretStr("not-the-secret")})
    )
    await wrong.open()
    try:
        assert not await wrong.ping()
        with pytest.raises(BlobStoreUnavailable):
            await wrong.put("t/x.bin", _chunks(b"x"), max_bytes=10)
    finally:
        await wrong.close()
