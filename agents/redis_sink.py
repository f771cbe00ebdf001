"""Redis sink: latest reading and status per device, pub/sub feeds, the optional legacy list.

Reads ``fleet.curated.v1`` (readings) and ``fleet.device-status.v1`` (transitions) in its own
consumer group (``agents.sink_group``), so a Redis outage never holds up the stream core or the
Postgres sink: the batch is retried with capped backoff and its offsets wait, nothing is lost.
Each batch is merged per device and written with one pipeline (``connectors.redis.writer``).

Delivery: at-least-once. Hashes are overwritten with the same values on a redelivery; a
transition applies once per ``seq``; pub/sub messages and the legacy list can repeat a reading
after a crash, and subscribers that must not double count dedupe on ``event_id``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
import redis.asyncio as aioredis

from agents.context import WorkerContext
from agents.deadletters import dead_letter
from agents.metrics import timed
from agents.outputs import Outputs
from agents.retry import retry_until_done
from agents.sink_group import SinkGroup, SinkMessage, start_sink
from connectors.redis.errors import is_retriable
from connectors.redis.keys import RedisKeys
from connectors.redis.writer import DeviceReadings, RedisBatch, RedisWriter, value_field
from schemas.catalogue import measurements
from schemas.envelopes import decode_curated_envelope
from schemas.errors import ValidationFailure
from schemas.status import decode_status_change
from schemas.validation import decode_json

log = logging.getLogger(__name__)

STAGE = "sink.redis"
GROUP = "sink-redis"
_json = msgspec.json.Encoder()


class _Reading(msgspec.Struct, frozen=True):
    event_id: str
    device_id: str
    ts: datetime
    received_at: datetime
    sensors: dict[str, dict[str, object]]


_reading_decoder = msgspec.json.Decoder(_Reading)


def merge(
    messages: Sequence[SinkMessage], *, readings_topic: str, deadletter_topic: str, now: datetime
) -> tuple[RedisBatch, Outputs]:
    """The batch's writes, merged per device, and dead letters for what cannot be read."""
    batch = RedisBatch()
    letters = Outputs()
    for message in messages:
        try:
            if message.topic == readings_topic:
                _add_readings(batch, message, letters, deadletter_topic, now)
            else:
                change = decode_status_change(message.value or b"")
                batch.changes.append((change, message.value or b""))
        except (ValidationFailure, msgspec.ValidationError, msgspec.DecodeError) as exc:
            letters.add(deadletter_topic, dead_letter(STAGE, message, exc, now))
    return batch, letters


def _add_readings(
    batch: RedisBatch, message: SinkMessage, letters: Outputs, deadletter: str, now: datetime
) -> None:
    envelope = decode_curated_envelope(message.value)
    for index, raw in enumerate(envelope.items):
        try:
            reading = decode_json(_reading_decoder, raw)
        except ValidationFailure as exc:
            letter = dead_letter(STAGE, message, exc, now, original=bytes(raw), item=index)
            letters.add(deadletter, letter)
            continue
        device = batch.devices.get(reading.device_id)
        if device is None:
            device = batch.devices[reading.device_id] = DeviceReadings(reading.device_id)
        item = bytes(raw)
        device.items.append(item)
        ts = reading.ts.isoformat()
        if ts >= device.latest_ts:
            device.latest_ts = ts
            device.latest = {
                "event_id": reading.event_id,
                "ts": ts,
                "received_at": reading.received_at.isoformat(),
                "reading": item.decode(),
            }
        status = device.status
        seen = reading.received_at.isoformat()
        if seen >= status.get("last_seen", ""):
            status["last_seen"] = seen
        status["device_id"] = reading.device_id
        status["last_event_id"] = reading.event_id
        for name, value in measurements(reading.sensors):
            status[value_field(name)] = _json.encode(value).decode()


def register(ctx: WorkerContext) -> None:
    settings = ctx.settings
    topics = settings.topics
    # Large batches: the commands are per device, so the more readings a batch merges per
    # device, the fewer commands a reading costs (FLEET_STREAM__STATE_BATCH_MAX envelopes).
    group = SinkGroup(
        settings, GROUP, [topics.curated, topics.device_status], settings.stream.state_batch_max
    )
    writer: RedisWriter | None = None

    async def handle(messages: list[SinkMessage]) -> None:
        nonlocal writer
        if writer is None:
            redis_settings = settings.redis
            client = aioredis.Redis.from_url(redis_settings.url)
            writer = RedisWriter(
                client,
                RedisKeys(redis_settings.prefix),
                redis_settings.legacy_list,
                redis_settings.legacy_list_max,
            )
            writer = timed(writer, "redis")
        now = datetime.now(UTC)
        batch, letters = merge(
            messages, readings_topic=topics.curated, deadletter_topic=topics.deadletter, now=now
        )
        active = writer
        await retry_until_done(
            lambda: active.write(batch),
            what=f"writing {len(batch.devices)} devices to Redis",
            is_retriable=is_retriable,
            backoff_max_s=settings.worker.retry_backoff_max_s,
        )
        await ctx.publish(letters)

    start_sink(ctx, group, handle)
