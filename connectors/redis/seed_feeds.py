"""The seeds' Redis readers (docs/compat.md), fed by the Redis sink when their profile is on.

* **Seed 002** (``FLEET_COMPAT__SEEDS`` holds ``002``): one ``PUBLISH sensor-events <reading>``
  per reading, as seed 002's analytics and alert services read it (``redisQueue.subscribe(
  'sensor-events', ...)``, one ``JSON.parse`` per message). The message is the canonical reading
  (the JSON of ``fleet.readings.v1``) plus the two fields those readers use under other names:
  ``timestamp`` (our ``ts``) and ``device_metadata`` (the registry's ``location``, ``name``,
  ``profile`` and ``tags`` of the device; ``{}`` for a device the registry does not know). The
  seed names only ``device_metadata.location``; the other three keys are ours.
* **Seed 001** (``001``): its queue ``sensor_data_queue`` is the Redis sink's list
  (``FLEET_REDIS__LEGACY_LIST``, which takes that name when left empty): ``LPUSH`` of every
  reading, which a consumer takes oldest first with ``BRPOP``. Seed 001 says only "JSON
  messages", so a message is the canonical reading. The list is bounded: after each push it is
  trimmed to ``FLEET_REDIS__LEGACY_LIST_MAX`` readings (``LTRIM``), so a consumer that stops
  costs Redis that many readings at most; when it is full, each push drops the oldest readings
  (the ones a consumer would have taken next). They are not lost to fleetstream: Kafka and
  Postgres hold them.

Delivery is the Redis sink's: at-least-once (a reading can repeat after a worker crash;
readers that must not double count dedupe on ``(device_id, event_id)``). Pub/sub messages reach
only the subscribers connected when they are published, as in seed 002.

Cost: seed 002's channel is one command per reading (the sink's other commands are per device),
paid only with the profile on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from connectors.redis.wire import Command
from schemas.settings import Settings

SEED002_CHANNEL = "sensor-events"
SEED001_QUEUE = "sensor_data_queue"


class _Enrichment(msgspec.Struct, frozen=True, gc=False):
    """What seed 002's message adds, read from a curated reading (other fields ignored)."""

    ts: str
    device_name: str | None = None
    profile: str | None = None
    location: Any = None
    tags: list[str] = []


_decoder = msgspec.json.Decoder(_Enrichment)
_encoder = msgspec.json.Encoder()


def seed002_event(item: bytes) -> bytes:
    """A curated reading's JSON as seed 002's ``EnrichedSensorReading``: the same object with
    ``timestamp`` and ``device_metadata`` added (an item the sink could read always has a
    ``ts``; one that cannot be read goes out as it is rather than hold up the batch)."""
    try:
        enrichment = _decoder.decode(item)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return item
    metadata = {
        "location": enrichment.location,
        "name": enrichment.device_name,
        "profile": enrichment.profile,
        "tags": enrichment.tags or None,
    }
    added = _encoder.encode(
        {
            "timestamp": enrichment.ts,
            "device_metadata": {k: v for k, v in metadata.items() if v is not None},
        }
    )
    body = item.rstrip()
    # Both are JSON objects: splice the added fields in rather than re-encode the reading.
    return body[:-1] + b"," + added[1:]


class SeedFeeds:
    """Commands of the seed 002 channel for a batch's readings (the Redis sink's hook)."""

    def __init__(self, channel: str = SEED002_CHANNEL) -> None:
        self.channel = channel

    def __call__(self, items: Sequence[bytes]) -> list[Command]:
        channel = self.channel
        return [("PUBLISH", channel, seed002_event(item)) for item in items]


def seed_feeds(settings: Settings) -> SeedFeeds | None:
    """The extra commands the Redis sink runs per batch, or None with no profile that needs
    them."""
    return SeedFeeds() if "002" in settings.compat.profiles() else None


def queue_name(settings: Settings) -> str:
    """The Redis sink's list: ``FLEET_REDIS__LEGACY_LIST``, else seed 001's queue when its
    profile is on, else none (empty)."""
    if settings.redis.legacy_list:
        return settings.redis.legacy_list
    return SEED001_QUEUE if "001" in settings.compat.profiles() else ""
