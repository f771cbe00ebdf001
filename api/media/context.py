"""What the media routes share, built by :func:`api.media.resources.media_resources`.

``app.state.media`` holds a :class:`Media`: the blob store (``FLEET_BLOB__BACKEND``), the
Postgres media store (on the registry's pool), the announcer of ``fleet.media.v1`` events (the
API's producer: ``acks=all`` before any 2xx) and the RTSP capture manager, whose running jobs
are cancelled, and marked failed, when the app stops.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, cast

from fastapi import Depends, Request

from api.media.errors import unavailable
from connectors.blob.base import BlobStore
from connectors.blob.errors import BlobStoreUnavailable
from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.producer import EventProducer, Record
from connectors.postgres.devices import DatabaseUnavailable
from connectors.postgres.media import MediaStore
from schemas.media import MediaEvent, encode_media_event
from schemas.settings import Settings

log = logging.getLogger(__name__)


class Announcer:
    """Produces ``fleet.media.v1`` events keyed by device_id (murmur2, like every topic)."""

    def __init__(self, producer: EventProducer, topic: str) -> None:
        self._producer, self.topic = producer, topic

    async def announce(self, events: Sequence[MediaEvent]) -> None:
        """Return once the broker acked every event; KafkaUnavailable/ProducerBackpressure
        otherwise (the API answers 503/429)."""
        records = [Record(event.device_id.encode(), encode_media_event(event)) for event in events]
        await self._producer.produce_all(self.topic, records)


_OUTAGES: dict[type[Exception], str] = {
    BlobStoreUnavailable: "the blob store",
    DatabaseUnavailable: "Postgres",
    KafkaUnavailable: "the event log",
}


@dataclass
class Media:
    settings: Settings
    blob: BlobStore
    store: MediaStore
    announcer: Announcer
    count_frames: Callable[[str, int], None]
    """Called with the source (``upload``, ``rtsp``) and the number of frames once they are
    stored, recorded and announced (``ApiMetrics.count_frames``)."""

    @property
    def storage(self) -> str:
        return self.settings.blob.backend

    async def forget(self, key: str) -> None:
        """Delete an object nobody will reference (a duplicate, or a failed request's); best
        effort: a failure is logged with the key, for an operator to clean up."""
        try:
            await self.blob.delete(key)
        except BlobStoreUnavailable as exc:
            log.warning("could not delete unreferenced object %s: %s", key, exc)

    async def seen(self, device_id: str, at: datetime) -> None:
        """Best effort, after a media request succeeded: ``devices.last_seen_at`` moves
        forward (a failure is logged; the media is stored and announced already)."""
        try:
            await self.store.device_seen(device_id, at)
        except DatabaseUnavailable as exc:
            log.warning("last_seen_at of %s not updated: %s", device_id, exc)

    def unavailable(self, exc: Exception) -> Exception:
        """The 503 for an outage of the blob store, Postgres or Kafka (logged, no secrets)."""
        log.warning("media request failed on an outage: %s", exc)
        what = _OUTAGES.get(type(exc), "a service")
        return unavailable(
            f"{what} is unavailable; retry the same upload (it is stored once)",
            self.settings.api.retry_after_s,
        )


async def get_media(request: Request) -> Media:
    return cast(Media, request.app.state.media)


MediaDep = Annotated[Media, Depends(get_media)]
