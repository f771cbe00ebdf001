"""The media resources of one API process, opened by the app's lifespan.

Needs the producer and the Postgres pool on ``app.state`` (``producer``, ``pg_pool``), so it
runs inside the registry resources. Puts :class:`~api.media.context.Media` on
``app.state.media`` and the :class:`~api.media.rtsp.CaptureManager` on ``app.state.captures``;
on shutdown, running captures are cancelled (their requests marked failed) before the blob
store closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, cast

from fastapi import Depends, FastAPI, Request

from api.media.context import Announcer, Media
from api.media.rtsp import CaptureManager
from connectors.blob.factory import blob_store
from connectors.postgres.media import MediaStore
from schemas.settings import Settings


@asynccontextmanager
async def media_resources(app: FastAPI, settings: Settings) -> AsyncIterator[Media]:
    blob = blob_store(settings.blob)
    await blob.open()
    media = Media(
        settings=settings,
        blob=blob,
        store=MediaStore(app.state.pg_pool),
        announcer=Announcer(app.state.producer, settings.topics.media),
        count_frames=app.state.metrics.count_frames,
    )
    captures = CaptureManager(media)
    app.state.media = media
    app.state.captures = captures
    try:
        yield media
    finally:
        await captures.stop()
        await blob.close()


async def get_captures(request: Request) -> CaptureManager:
    return cast(CaptureManager, request.app.state.captures)


CapturesDep = Annotated[CaptureManager, Depends(get_captures)]
