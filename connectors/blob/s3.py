"""The blob store on an S3-compatible server (AWS S3, MinIO, the local stack's S3Proxy).

Writes: objects up to one part (``FLEET_BLOB__S3_PART_BYTES``) go up in one ``PutObject``;
larger ones in a multipart upload that is completed only after the last byte arrived and
aborted on any failure, size overrun or cancellation, so S3 never shows a partial object. At
most one part is in memory per upload. Every request carries ``Content-MD5``, so the server
refuses bytes damaged in transit. The SHA-256 of the whole object is computed while streaming
and returned (callers store it with the metadata).

botocore's newer default CRC checksums (aws-chunked trailers) are switched to "when required":
S3-compatible servers do not all implement them, and Content-MD5 covers the transfer.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError

from connectors.blob.base import BlobStore, Digest, StoredBlob, check_key
from connectors.blob.errors import BlobNotFound, BlobStoreUnavailable
from connectors.tls import s3_verify
from schemas.settings import BlobSettings

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

log = logging.getLogger(__name__)

READ_CHUNK = 256 * 1024
_ERRORS = (BotoCoreError, ClientError, OSError, asyncio.TimeoutError)


class S3BlobStore(BlobStore):
    backend = "s3"

    def __init__(self, settings: BlobSettings) -> None:
        self.settings = settings
        self.bucket = settings.s3_bucket
        self._stack: AsyncExitStack | None = None
        self._client: S3Client | None = None

    async def open(self) -> None:
        """Connect and create the bucket when it is missing."""
        s = self.settings
        config = AioConfig(
            s3={"addressing_style": "path"},
            connect_timeout=min(s.s3_timeout_s, 10.0),
            read_timeout=s.s3_timeout_s,
            retries={"max_attempts": 3, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        stack = AsyncExitStack()
        self._client = await stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=s.s3_endpoint,
                region_name=s.s3_region,
                aws_access_key_id=s.s3_access_key,
                aws_secret_access_key=s.s3_secret_key.get_secret_value(),
                config=config,
                verify=s3_verify(s),
            )
        )
        self._stack = stack
        try:
            await self._ensure_bucket()
        except _ERRORS as exc:
            # The API starts anyway (readiness reports it); writes retry the connection.
            log.warning("S3 bucket %s not reachable at %s: %s", self.bucket, s.s3_endpoint, exc)

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = self._client = None

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    async def put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        max_bytes: int,
        content_type: str = "application/octet-stream",
    ) -> StoredBlob:
        check_key(key)
        upload = _Upload(self._require(), self.bucket, key, content_type)
        digest = Digest(max_bytes)
        part_bytes = self.settings.s3_part_bytes
        buffer = bytearray()
        try:
            async for chunk in chunks:
                digest.update(chunk)
                buffer += chunk
                while len(buffer) >= part_bytes:
                    await upload.part(bytes(buffer[:part_bytes]))
                    del buffer[:part_bytes]
            await upload.finish(bytes(buffer))
        except _ERRORS as exc:
            await upload.abandon()
            raise BlobStoreUnavailable(f"storing {self.describe(key)} failed: {exc}") from exc
        except BaseException:
            await upload.abandon()
            raise
        return StoredBlob(key, digest.size, digest.hexdigest, content_type)

    async def get(self, key: str) -> AsyncIterator[bytes]:
        client = self._require()
        try:
            response = await client.get_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                raise BlobNotFound(key) from exc
            raise BlobStoreUnavailable(f"reading {self.describe(key)} failed: {exc}") from exc
        async with response["Body"] as body:
            async for chunk in body.iter_chunks(READ_CHUNK):
                yield chunk

    async def delete(self, key: str) -> None:
        try:
            await self._require().delete_object(Bucket=self.bucket, Key=check_key(key))
        except _ERRORS as exc:
            raise BlobStoreUnavailable(f"deleting {self.describe(key)} failed: {exc}") from exc

    async def size_of(self, key: str) -> int | None:
        try:
            head = await self._require().head_object(Bucket=self.bucket, Key=check_key(key))
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404", "NotFound"):
                return None
            raise BlobStoreUnavailable(f"reading {self.describe(key)} failed: {exc}") from exc
        return int(head["ContentLength"])

    async def ping(self) -> bool:
        try:
            await self._require().head_bucket(Bucket=self.bucket)
        except (*_ERRORS, RuntimeError):
            return False
        return True

    async def _ensure_bucket(self) -> None:
        client = self._require()
        try:
            await client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            await client.create_bucket(Bucket=self.bucket)
            log.info("created bucket %s", self.bucket)

    def _require(self) -> S3Client:
        if self._client is None:
            raise RuntimeError("S3BlobStore.open() was not called")
        return self._client


class _Upload:
    """One object's write: a single PUT, or a multipart upload once a whole part is ready."""

    def __init__(self, client: S3Client, bucket: str, key: str, content_type: str) -> None:
        self.client, self.bucket, self.key, self.content_type = client, bucket, key, content_type
        self.upload_id: str | None = None
        self.parts: list[CompletedPartTypeDef] = []

    async def part(self, data: bytes) -> None:
        if self.upload_id is None:
            created = await self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=self.content_type
            )
            self.upload_id = created["UploadId"]
        number = len(self.parts) + 1
        uploaded = await self.client.upload_part(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=data,
            ContentMD5=_md5(data),
        )
        self.parts.append({"ETag": uploaded["ETag"], "PartNumber": number})

    async def finish(self, rest: bytes) -> None:
        if self.upload_id is None:
            await self.client.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=rest,
                ContentType=self.content_type,
                ContentMD5=_md5(rest),
            )
            return
        if rest:
            await self.part(rest)
        await self.client.complete_multipart_upload(
            Bucket=self.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            MultipartUpload={"Parts": self.parts},
        )

    async def abandon(self) -> None:
        """Abort a started multipart upload (shielded: it must run even when cancelled)."""
        if self.upload_id is None:
            return
        abort = self.client.abort_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id
        )
        try:
            await asyncio.shield(abort)
        except (*_ERRORS, asyncio.CancelledError) as exc:
            log.warning("aborting the upload of %s failed: %s", self.key, exc)


def _md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()


def _code(exc: ClientError) -> str:
    error: dict[str, Any] = dict(exc.response.get("Error", {}))
    return str(error.get("Code", ""))
