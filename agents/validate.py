"""Validate and curate: raw envelopes → curated envelopes, analytics records, dead letters.

For a taken batch of ``fleet.raw.v1`` records every reading ends up in exactly one place:

* valid: curated once (enriched from the device registry, ``agents.enrichment``), then
  written twice from the same bytes: into a curated envelope on ``fleet.curated.v1`` (the
  partition of its device, with the reading's raw position, for the status table, the rollups
  and the sinks) and as its own record on ``fleet.readings.v1`` (keyed by device_id, for
  analytics);
* invalid (bad JSON, a failed rule, an undecodable item, even a validator bug), refused by a
  policy (unknown or disabled device, unknown sensor type) or replayed from the dead-letter
  topic more than ``FLEET_STREAM__MAX_REPLAYS`` times: a dead letter on
  ``fleet.deadletter.v1`` with the reason and what is needed to replay it.

The batch's records are acked only after every output was acked by the broker, in order:
while the broker acks one batch the next is validated (``agents.pipelined``, up to
``FLEET_WORKER__VALIDATE_IN_FLIGHT`` batches). The agent starts only once the worker's copy of
the device registry has caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from agents.deadletters import KafkaMessage, dead_letter
from agents.enrichment import Derived, Enricher
from agents.pipelined import InOrderAcks
from connectors.kafka.partitioner import partition_for
from connectors.kafka.producer import Record
from connectors.schema_registry import encoder_for
from schemas.avro_codec import ReadingsEncoder
from schemas.catalogue import GenericLimits
from schemas.compiled_core import compiled_core, enrichment_avro, enrichment_json
from schemas.envelopes import (
    CURATED_FORMAT,
    FORMAT_HEADER,
    Position,
    curated_envelope,
    decode_raw_record,
    single_item_envelope,
)
from schemas.errors import ValidationFailure
from schemas.events import (
    CuratedReading,
    Enrichment,
    RawEvent,
    UnknownSensors,
    decode_curated,
    decode_raw_event,
    encode_curated,
    validate_event_with_sensors,
)
from schemas.settings import TopicSettings
from schemas.validation import DEFAULT_GENERIC_LIMITS
from streams.context import WorkerContext, guarded, stop_worker
from streams.outputs import Outputs

if TYPE_CHECKING:
    from fleetstream_native import Core

log = logging.getLogger(__name__)

STAGE = "validate"
SHUTDOWN_DRAIN_S = 5.0
_PARTITIONS_KEPT = 200_000  # a bound, not an LRU: fleets are smaller than this
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_CURATED_HEADERS: list[tuple[str, str | bytes | None]] = [(FORMAT_HEADER, CURATED_FORMAT.encode())]
_Spliced = tuple[bytes, bytes]
"""A device's enrichment for the compiled core: its curated JSON fields, its Avro fields."""
_CoreItem = tuple[str, bytes, bytes | None]
"""A reading the compiled core curated: device_id, curated JSON, Avro value (None: not
written, the Python encoder writes it)."""


@dataclass(frozen=True)
class Validation:
    """The validate step for one batch, without Faust: messages in, outputs out."""

    topics: TopicSettings
    curated_partitions: int
    envelope_max_bytes: int
    enricher: Enricher | None = None
    unknown_sensors: UnknownSensors = "deadletter"
    generic_limits: GenericLimits = DEFAULT_GENERIC_LIMITS
    """What the generic rules take of one reading (``FLEET_GENERIC__*``): the edges checked it,
    but readings a third party produced to the raw topic did not pass an edge."""
    max_replays: int = 1
    readings_encoder: Callable[[CuratedReading], bytes] = encode_curated
    """``fleet.readings.v1`` values: the worker passes the Avro encoder (schemas.avro_codec)."""
    core: Core | None = None
    """The compiled core (``FLEET_STREAM__CORE=compiled``, ``schemas.compiled_core``): it
    curates every record it can take whole; the others take the Python path below, the
    reference, which also writes every dead letter."""
    _partitions: dict[str, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    """device_id -> curated partition (``partition_for`` keys its own cache by a tuple)."""
    _spliced: Callable[[str], _Spliced] = field(init=False, repr=False, compare=False)
    """device_id -> its enrichment as the compiled core splices it (JSON, Avro), kept per
    registry document; raises for a device the policies refuse."""

    def __post_init__(self) -> None:
        enricher = self.enricher
        spliced: Callable[[str], _Spliced]
        if enricher is None:
            spliced = functools.partial(_splice, enrichment=None)
        else:
            spliced = Derived(enricher, _splice)
        object.__setattr__(self, "_spliced", spliced)

    def run(self, messages: Sequence[KafkaMessage], now: datetime) -> Outputs:
        outputs = Outputs()
        batch = _Batch(outputs, [], defaultdict(_Curated))
        if self.core is None:
            for message in messages:
                self._one_record(message, now, batch)
        else:
            self._compiled(messages, now, batch)
        outputs.extend(self.topics.readings, batch.readings)
        for partition, curated in batch.curated.items():
            items, positions = curated.items, curated.positions
            for run in _runs(items, self.envelope_max_bytes):
                value = curated_envelope(items[run], positions[run])
                outputs.add(self.topics.curated, Record(None, value, partition, _CURATED_HEADERS))
        return outputs

    def _compiled(self, messages: Sequence[KafkaMessage], now: datetime, batch: _Batch) -> None:
        """The batch through the compiled core; what it leaves, through the reference."""
        assert self.core is not None  # noqa: S101 - run() checked it
        now_us = (now - _EPOCH) // _MICROSECOND
        encoder = self.readings_encoder
        # With the Avro encoder the core writes the fleet.readings.v1 records too.
        prefix = encoder.prefix if isinstance(encoder, ReadingsEncoder) else None
        results = self.core.validate([m.value for m in messages], now_us, self._spliced, prefix)
        for message, items in zip(messages, results, strict=True):
            events = None if items is None else self._left_items(items)
            if items is None or events is None:
                self._one_record(message, now, batch)
            else:
                self._add_items(message, items, events, now, batch)

    @staticmethod
    def _left_items(items: list[_CoreItem | bytes]) -> dict[int, RawEvent] | None:
        """The items the core left, decoded; None if one is not a raw event (the reference
        then takes the whole record: it numbers the items that decode)."""
        events: dict[int, RawEvent] = {}
        for index, item in enumerate(items):
            if isinstance(item, bytes):
                try:
                    events[index] = decode_raw_event(item)
                except ValidationFailure:
                    return None
        return events

    def _add_items(
        self,
        message: KafkaMessage,
        items: list[_CoreItem | bytes],
        events: dict[int, RawEvent],
        now: datetime,
        batch: _Batch,
    ) -> None:
        """The record's readings: curated by the core, or by the reference (``_curate``)
        when the core left them or their ``fleet.readings.v1`` value does not encode."""
        raw_position = raw_partition, raw_offset = message.partition, message.offset
        # The loop below runs for every reading: locals instead of attribute look-ups, and
        # _add() inlined.
        readings, curated, partitions = batch.readings, batch.curated, self._partitions
        for index, item in enumerate(items):
            if type(item) is tuple:
                device_id, value, readings_value = item
                if readings_value is None:
                    try:
                        readings_value = self._readings_value(value)
                    except Exception:  # noqa: BLE001 - the reference names what went wrong
                        events[index] = _raw_events(message)[index]
                        readings_value = None
                if readings_value is not None:
                    readings.append(Record(device_id.encode(), readings_value))
                    partition = partitions.get(device_id)
                    if partition is None:
                        partition = self._partition_of(device_id)
                    entry = curated[partition]
                    entry.items.append(value)
                    entry.positions.append((raw_partition, raw_offset, index))
                    continue
            event = events[index]
            try:
                value, readings_value = self._curate(event, now)
            except Exception as exc:  # noqa: BLE001 - a dead letter, whatever went wrong
                letter = self._letter(message, event, single_item_envelope(event), exc, now)
                batch.outputs.add(self.topics.deadletter, letter)
                continue
            self._add(batch, event.device_id, value, readings_value, (*raw_position, index))

    def _add(
        self, batch: _Batch, device_id: str, value: bytes, readings_value: bytes, at: Position
    ) -> None:
        batch.readings.append(Record(device_id.encode(), readings_value))
        partition = self._partitions.get(device_id)
        if partition is None:
            partition = self._partition_of(device_id)
        entry = batch.curated[partition]
        entry.items.append(value)
        entry.positions.append(at)

    def _readings_value(self, curated: bytes) -> bytes:
        encoder = self.readings_encoder
        if encoder is encode_curated:
            return curated
        reading = decode_curated(curated)
        if isinstance(encoder, ReadingsEncoder):
            return encoder.with_sensors(reading, None)
        return encoder(reading)

    def _one_record(self, message: KafkaMessage, now: datetime, batch: _Batch) -> None:
        record = decode_raw_record(
            message.value,
            record_id=f"{message.topic}/{message.partition}/{message.offset}",
            record_time=datetime.fromtimestamp(message.timestamp, UTC),
            format_header=_header(message.headers, FORMAT_HEADER),
        )
        deadletter = self.topics.deadletter
        for failure in record.failures:
            letter = dead_letter(
                STAGE, message, failure.error, now, original=failure.original, item=failure.index
            )
            batch.outputs.add(deadletter, letter)
        # The loop below runs for every reading: locals instead of attribute look-ups.
        readings, curated, curate = batch.readings, batch.curated, self._curate
        partitions, raw_partition, raw_offset = self._partitions, message.partition, message.offset
        for index, event in enumerate(record.events):
            try:
                value, readings_value = curate(event, now)
            except Exception as exc:  # noqa: BLE001 - a dead letter, whatever went wrong
                original = single_item_envelope(event) if record.enveloped else message.value
                batch.outputs.add(deadletter, self._letter(message, event, original, exc, now))
                continue
            device_id = event.device_id
            readings.append(Record(device_id.encode(), readings_value))
            partition = partitions.get(device_id)
            if partition is None:
                partition = self._partition_of(device_id)
            entry = curated[partition]
            entry.items.append(value)
            entry.positions.append((raw_partition, raw_offset, index))

    def _partition_of(self, device_id: str) -> int:
        """The device's curated partition, kept in ``_partitions`` (cleared at a bound)."""
        if len(self._partitions) >= _PARTITIONS_KEPT:
            self._partitions.clear()
        partition = self._partitions[device_id] = partition_for(device_id, self.curated_partitions)
        return partition

    def _curate(self, event: RawEvent, now: datetime) -> tuple[bytes, bytes]:
        if event.replay_count > self.max_replays:
            raise ValidationFailure.single(
                ("replayed",),
                f"replayed {event.replay_count} times; at most {self.max_replays} allowed",
                "replay_limit",
            )
        enrichment = None if self.enricher is None else self.enricher.enrichment(event.device_id)
        curated, sensors = validate_event_with_sensors(
            event,
            now=now,
            enrichment=enrichment,
            unknown_sensors=self.unknown_sensors,
            limits=self.generic_limits,
        )
        encoder = self.readings_encoder
        if isinstance(encoder, ReadingsEncoder):  # the Avro one reads the validated sensors
            return encode_curated(curated), encoder.with_sensors(curated, sensors)
        return encode_curated(curated), encoder(curated)

    @staticmethod
    def _letter(
        message: KafkaMessage,
        event: RawEvent,
        original: bytes | None,
        exc: Exception,
        now: datetime,
    ) -> Record:
        """A dead letter for one reading; ``original`` replays it (a one-item envelope, or
        the record itself when it was a lone reading in an older format)."""
        if not isinstance(exc, ValidationFailure):
            log.error("validator crashed on event %s", event.event_id, exc_info=exc)
        return dead_letter(
            STAGE,
            message,
            exc,
            now,
            original=original,
            key=event.device_id,
            event_id=event.event_id,
        )


@dataclass(frozen=True, slots=True)
class _Batch:
    """What one run collects: dead letters go straight to ``outputs``."""

    outputs: Outputs
    readings: list[Record]
    """``fleet.readings.v1`` records, in order."""
    curated: defaultdict[int, _Curated]
    """By curated partition."""


@dataclass(frozen=True, slots=True)
class _Curated:
    """A partition's curated items and their raw positions, in order (two lists: no pair
    per reading)."""

    items: list[bytes] = field(default_factory=list)
    positions: list[Position] = field(default_factory=list)


def _splice(device_id: str, enrichment: Enrichment | None) -> _Spliced:
    """A device's enrichment as the compiled core splices it into a curated reading's JSON
    and into its ``fleet.readings.v1`` Avro record."""
    return enrichment_json(enrichment), enrichment_avro(device_id, enrichment)


def _raw_events(message: KafkaMessage) -> Sequence[RawEvent]:
    """The raw events of an envelope every item of which decodes (the core checked)."""
    return decode_raw_record(
        message.value, record_id="", record_time=_EPOCH, format_header=None
    ).events


def _header(headers: Any, name: str) -> bytes | None:
    """A header's value from Faust's headers (a mapping or a list of pairs)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == name:
            return value if isinstance(value, bytes) else None
    return None


_ENVELOPE_OVERHEAD = len(curated_envelope([], []))
_POSITION_MAX_BYTES = 42  # "[2147483647,9223372036854775807,999999]," at the very most


def _runs(items: list[bytes], max_bytes: int) -> Iterator[slice]:
    """``items`` in runs whose encoded envelope (with positions) stays under ``max_bytes``."""
    per_item = 1 + _POSITION_MAX_BYTES
    if not items:
        return
    if _ENVELOPE_OVERHEAD + sum(map(len, items)) + per_item * len(items) <= max_bytes:
        yield slice(0, len(items))  # the usual case, summed at C speed
        return
    start, size = 0, _ENVELOPE_OVERHEAD
    for end, item in enumerate(items):
        grows = len(item) + per_item
        if end > start and size + grows > max_bytes:
            yield slice(start, end)
            start, size = end, _ENVELOPE_OVERHEAD
        size += grows
    if start < len(items):
        yield slice(start, len(items))


def register(ctx: WorkerContext) -> None:
    worker = ctx.settings.worker

    stream_settings = ctx.settings.stream

    async def validate(stream: Any) -> None:
        producer = await ctx.producer()
        # Fails (stopping the worker, with the registry's address) if the registry is down.
        readings = await asyncio.to_thread(encoder_for, ctx.settings, "readings")
        devices = ctx.device_cache()
        await _wait_for_registry(devices.wait_caught_up, ctx.settings.topics.devices)
        validation = Validation(
            topics=ctx.settings.topics,
            curated_partitions=await producer.partition_count(ctx.settings.topics.curated),
            envelope_max_bytes=ctx.settings.kafka.envelope_max_bytes,
            enricher=Enricher(
                devices,
                unknown=stream_settings.unknown_devices,
                disabled=stream_settings.disabled_devices,
            ),
            unknown_sensors=stream_settings.unknown_sensor_types,
            generic_limits=ctx.settings.generic.limits(),
            max_replays=stream_settings.max_replays,
            readings_encoder=readings.readings(),
            core=_core(ctx),
        )
        acks = InOrderAcks(
            stream.ack, functools.partial(stop_worker, "validate"), worker.validate_in_flight
        )
        try:
            async for events in stream.noack_take(worker.validate_batch_max, worker.batch_within_s):
                outputs = validation.run([event.message for event in events], datetime.now(UTC))
                _log_letters(outputs.records(ctx.settings.topics.deadletter))
                await acks.submit(ctx.publish(outputs), list(events))
        finally:
            # Stopping: ack what the broker acks within a moment, so less is validated again.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(acks.drain(), SHUTDOWN_DRAIN_S)
            await acks.close()

    ctx.app.agent(ctx.topics.raw, name="validate")(guarded("validate", validate, ctx.crashes))


def _core(ctx: WorkerContext) -> Core | None:
    """The compiled core when ``FLEET_STREAM__CORE=compiled``; None: the Python reference."""
    stream = ctx.settings.stream
    if stream.core != "compiled":
        return None
    return compiled_core(
        unknown_sensors=stream.unknown_sensor_types,
        limits=ctx.settings.generic.limits(),
        max_replays=stream.max_replays,
    )


async def _wait_for_registry(
    wait_caught_up: Callable[[float], Awaitable[bool]], topic: str
) -> None:
    """Wait (logging every 10 s) until the registry copy has read ``topic`` to its end."""
    while not await wait_caught_up(10.0):
        log.warning("waiting for the device registry (%s) before validating readings", topic)
        await asyncio.sleep(0)


def _log_letters(letters: list[Record]) -> None:
    if letters:
        log.warning("%d readings of this batch went to the dead-letter topic", len(letters))
