"""Redis sink: latest reading and status per device, pub/sub feeds, the optional legacy list.

Reads ``fleet.curated.v1`` (readings) and ``fleet.device-status.v1`` (transitions) in its own
consumer group (``agents.sink_group``), so a Redis outage never holds up the stream core or the
Postgres sink: the batch is retried with capped backoff and its offsets wait, nothing is lost.
A batch gathers ``FLEET_REDIS__FLUSH_INTERVAL_S`` of records (or a size cap), is merged per device
and written with one pipeline (``connectors.redis.writer``): the commands are per device, so
their cost follows the fleet, not the rate of readings, and a reading reaches Redis that much
later. Sensor objects stay encoded while a batch is read: only each device's last object of
each sensor type is decoded.

A tombstone on the status topic (a device deleted from the registry, ``agents.status``) deletes
the device's two hashes.

Delivery: at-least-once. Hashes are overwritten with the same values on a redelivery; a
transition applies once per ``seq``; pub/sub messages and the legacy list can repeat a reading
after a crash, and subscribers that must not double count dedupe on ``(device_id, event_id)``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec

from agents.curated import ITEMS_PER_TURN, Turns
from agents.deadletters import dead_letter, item_letters
from agents.sink_group import SinkGroup, SinkMessage, start_sink
from connectors.redis.clients import writer_pipe
from connectors.redis.compiled import CompiledMerge
from connectors.redis.errors import is_retriable
from connectors.redis.keys import VALUE_PREFIX, RedisKeys
from connectors.redis.seed_feeds import queue_name, seed_feeds
from connectors.redis.writer import (
    DeviceReadings,
    RedisBatch,
    RedisWriter,
)
from schemas.contract_wire import decode_status
from schemas.envelopes import CuratedReader
from schemas.errors import ValidationFailure
from schemas.settings import Settings
from streams.context import WorkerContext
from streams.metrics import timed
from streams.outputs import Outputs
from streams.retry import retry_until_done

log = logging.getLogger(__name__)

STAGE = "sink.redis"
GROUP = "sink-redis"


class _Reading(msgspec.Struct, frozen=True, gc=False):
    event_id: str
    device_id: str
    ts: datetime
    received_at: datetime
    sensors: dict[str, msgspec.Raw]
    """Left encoded: only a device's last object of each sensor type in a batch is decoded."""


_reader = CuratedReader(_Reading)
_json = msgspec.json.Encoder()
_sensor_fields = msgspec.json.Decoder(dict[str, msgspec.Raw])
_NOT_SCALAR = frozenset(b"{[n")
"""First bytes of an encoded value that is an object, an array or null: not a field's value."""


@dataclass(slots=True)
class _Merging:
    """One device's readings of a batch while they are read; turned into fields once."""

    device: DeviceReadings
    latest: _Reading | None = None
    latest_item: bytes = b""
    last_seen: datetime | None = None
    last_event_id: str = ""
    sensors: dict[str, msgspec.Raw] = field(default_factory=dict)
    """The last object of each sensor type, still encoded, in arrival order."""

    def add(self, reading: _Reading, item: bytes) -> None:
        self.device.items.append(item)
        if self.latest is None or reading.ts >= self.latest.ts:
            self.latest, self.latest_item = reading, item
        if self.last_seen is None or reading.received_at >= self.last_seen:
            self.last_seen = reading.received_at
        self.last_event_id = reading.event_id
        self.sensors.update(reading.sensors)

    def finish(self) -> None:
        """Fill the device's hash fields: formatting and encoding once per device, not per
        reading, is most of what the sink saves by merging."""
        latest, device = self.latest, self.device
        if latest is None or self.last_seen is None:
            return
        device.latest_ts = latest.ts.isoformat()
        device.latest = {
            "event_id": latest.event_id,
            "ts": device.latest_ts,
            "received_at": latest.received_at.isoformat(),
            "reading": self.latest_item,
        }
        status = device.status
        status["last_seen"] = self.last_seen.isoformat()
        status["device_id"] = device.device_id
        status["last_event_id"] = self.last_event_id
        for sensor, raw in self.sensors.items():
            try:
                values = _sensor_fields.decode(raw)
            except msgspec.ValidationError:  # not an object: no fields
                continue
            # What schemas.catalogue.measurements yields, inlined: a generator and a name
            # function per field cost more than the rest of a device's fields. The values are
            # kept as encoded in the curated reading (by the same encoder): no decode, encode.
            prefix = f"{VALUE_PREFIX}{sensor}."
            for name, value in values.items():
                encoded = bytes(value)
                if encoded[0] not in _NOT_SCALAR:
                    status[prefix + name] = encoded


DEVICE_FINISH_ITEMS = 10
"""A device's fields, built once per batch (decoding its sensors, formatting times), in items."""


async def merge(
    messages: Sequence[SinkMessage],
    *,
    readings_topic: str,
    deadletter_topic: str,
    now: datetime,
    turn: Turns | None = None,
    compiled: CompiledMerge | None = None,
) -> tuple[RedisBatch, Outputs]:
    """The batch's writes, merged per device, and dead letters for what cannot be read.

    With ``compiled``, the readings are merged and packed by the compiled core when it takes
    them all (``connectors.redis.compiled``); otherwise, and for the status records, here.
    Gives the event loop a turn every ``ITEMS_PER_TURN`` items: a flush interval of readings
    merged at once would hold the worker's other agents up for tens of ms (decision 29)."""
    turn = Turns(ITEMS_PER_TURN) if turn is None else turn
    batch = RedisBatch()
    letters = Outputs()
    if compiled is not None:
        readings = [m.value for m in messages if m.topic == readings_topic]
        batch.packed = compiled.merge(readings) if readings else None
        if batch.packed is not None:
            messages = [m for m in messages if m.topic != readings_topic]
    merging: dict[str, _Merging] = {}
    for message in messages:
        try:
            if message.topic == readings_topic:
                read = _add_readings(merging, batch, message, letters, deadletter_topic, now)
                await turn.took(read)
            elif message.value is None and message.key:
                batch.deleted.append(message.key.decode(errors="replace"))  # a status tombstone
            else:
                change = decode_status(message.value or b"")
                batch.changes.append((change, _json.encode(change)))  # pub/sub: JSON
        except (ValidationFailure, msgspec.ValidationError, msgspec.DecodeError) as exc:
            letters.add(deadletter_topic, dead_letter(STAGE, message, exc, now))
    for device in merging.values():
        device.finish()
        await turn.took(DEVICE_FINISH_ITEMS)
    return batch, letters


def _add_readings(
    merging: dict[str, _Merging],
    batch: RedisBatch,
    message: SinkMessage,
    letters: Outputs,
    deadletter: str,
    now: datetime,
) -> int:
    """Add an envelope's readings; returns how many items it held."""
    read = _reader.read(message.value)
    letters.extend(deadletter, item_letters(STAGE, message, read.failures, now))
    devices = batch.devices
    for reading, raw in zip(read.items, read.raws(), strict=True):
        device = merging.get(reading.device_id)
        if device is None:
            readings = devices[reading.device_id] = DeviceReadings(reading.device_id)
            device = merging[reading.device_id] = _Merging(readings)
        device.add(reading, bytes(raw))
    return len(read.items) + len(read.failures)


def sink_group(settings: Settings) -> SinkGroup:
    """Batches by time: the commands are per device, so gathering FLEET_REDIS__FLUSH_INTERVAL_S
    of readings bounds them by the fleet, not by the rate (FLEET_STREAM__STATE_BATCH_MAX
    envelopes cap a batch's memory when catching up)."""
    topics = settings.topics
    return SinkGroup(
        settings,
        GROUP,
        [topics.curated, topics.device_status],
        settings.stream.state_batch_max,
        within_s=settings.redis.flush_interval_s,
    )


def register(ctx: WorkerContext) -> None:
    settings = ctx.settings
    topics = settings.topics
    group = sink_group(settings)
    writer: RedisWriter | None = None
    compiled: CompiledMerge | None = None

    async def handle(messages: list[SinkMessage]) -> None:
        nonlocal writer, compiled
        if writer is None:
            redis_settings = settings.redis
            pipe = writer_pipe(redis_settings)
            writer = RedisWriter(
                pipe,
                RedisKeys(redis_settings.prefix),
                queue_name(settings),
                redis_settings.legacy_list_max,
                seed_feeds(settings),
            )
            if redis_settings.merge == "compiled" and writer.takes_packed:
                compiled = CompiledMerge(redis_settings.prefix)
            writer = timed(writer, "redis")
        now = datetime.now(UTC)
        batch, letters = await merge(
            messages,
            readings_topic=topics.curated,
            deadletter_topic=topics.deadletter,
            now=now,
            compiled=compiled,
        )
        active = writer
        await retry_until_done(
            lambda: active.write(batch),
            what=f"writing {batch.device_count} devices to Redis",
            is_retriable=is_retriable,
            backoff_max_s=settings.worker.retry_backoff_max_s,
        )
        await ctx.publish(letters)

    start_sink(ctx, group, handle)
