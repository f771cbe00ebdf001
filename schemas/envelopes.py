"""Envelopes: the record format inside the pipeline (many readings per Kafka record).

Faust spends ~58 µs of framework time per Kafka message, so one reading per message caps a
worker near 17k readings/s; with many readings per message the same worker moves hundreds of
thousands. Every hop inside fleetstream therefore carries envelopes:

===========================  =======================================  ==========================
topic                        value                                     who writes it
===========================  =======================================  ==========================
``fleet.raw.v1``             ``{"format": "raw-envelope/2",            HTTP / MQTT edge
                             "items": [RawEvent, ...]}``
``fleet.curated.v1``         ``{"format": "curated-envelope/1",        validate agent, for sinks
                             "items": [CuratedReading, ...],
                             "positions": [[p, offset, n], ...]}``
===========================  =======================================  ==========================

A curated envelope's optional ``positions`` say where each item came from: the partition and
offset of its ``fleet.raw.v1`` record and its index among that record's readings. A device's
readings come from one raw partition in offset order, and re-validating a raw record (after a
crash, before its offset was committed) gives the same positions again, so a stateful consumer
that keeps the highest position it applied per device drops repeats exactly (the status table
and the rollups do; the sinks dedupe on event_id instead).

Contract: every item of an envelope belongs to the partition the envelope is on, the one
Kafka's default partitioner (murmur2 of the device_id) gives a record keyed by the item's
device_id (``connectors.kafka.partitioner``). Per-device order, co-partitioned tables and
scaling by partitions are exactly as with one record per reading. The record header
``fleet-format`` names the format too; the value's first field says it without headers.

Compatibility: a record on ``fleet.raw.v1`` that is not an envelope is read as one reading, so
third-party producers and records written before envelopes keep working: a single
:class:`~schemas.events.RawEvent` (format 1), or a bare reading as a device sends it (its
event_id is then the reading's own, or derived from the record's topic/partition/offset so a
redelivery keeps its id).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Generic, TypeVar

import msgspec

from schemas.errors import ValidationFailure, detach
from schemas.events import RawEvent, encoder, raw_event_decoder
from schemas.validation import decode_json, decode_reading

__all__ = [
    "CURATED_FORMAT",
    "CURATED_PREFIX",
    "FORMAT_HEADER",
    "RAW_FORMAT",
    "CuratedBatch",
    "CuratedRead",
    "CuratedReader",
    "ItemFailure",
    "Position",
    "RawRecord",
    "curated_envelope",
    "decode_curated_envelope",
    "decode_curated_items",
    "decode_raw_record",
    "encode_item",
    "envelope_prefix",
    "raw_envelope",
    "single_item_envelope",
]

FORMAT_HEADER: Final = "fleet-format"
RAW_FORMAT: Final = "raw-envelope/2"
CURATED_FORMAT: Final = "curated-envelope/1"


def envelope_prefix(format_name: str) -> bytes:
    """How an envelope of ``format_name`` as written here starts, up to its first item."""
    return b'{"format":"' + format_name.encode() + b'","items":['


_RAW_PREFIX: Final = envelope_prefix(RAW_FORMAT)
CURATED_PREFIX: Final = envelope_prefix(CURATED_FORMAT)
_SUFFIX: Final = b"]}"
# A bare reading's derived event id: the same record always gets the same id.
_RECORD_NAMESPACE: Final = uuid.UUID("0b6f6a1e-53f5-4c56-9d1e-7a0c3f1f6e2a")


class _RawEnvelope(msgspec.Struct, frozen=True):
    format: str
    items: list[RawEvent]


class _LooseEnvelope(msgspec.Struct, frozen=True):
    """An envelope whose items are still bytes: finds the bad item when the strict decode fails."""

    format: str
    items: list[msgspec.Raw]


_raw_envelope_decoder = msgspec.json.Decoder(_RawEnvelope)
_loose_decoder = msgspec.json.Decoder(_LooseEnvelope)


def encode_item(event: RawEvent) -> bytes:
    """One item's JSON; the edge encodes each reading once and joins them into envelopes."""
    return encoder.encode(event)


def raw_envelope(items: Iterable[bytes]) -> bytes:
    """The ``fleet.raw.v1`` value holding the encoded ``items`` (from :func:`encode_item`)."""
    return _RAW_PREFIX + b",".join(items) + _SUFFIX


def single_item_envelope(event: RawEvent) -> bytes:
    """A one-item raw envelope: what a dead letter keeps so the reading can be replayed."""
    return raw_envelope([encode_item(event)])


Position = tuple[int, int, int]
"""(raw partition, raw offset, index among the record's readings) of a curated item."""


def curated_envelope(items: Iterable[bytes], positions: Sequence[Position] | None = None) -> bytes:
    """The ``fleet.curated.v1`` value holding encoded ``CuratedReading`` items (and their
    raw positions, one per item, when given)."""
    body = CURATED_PREFIX + b",".join(items)
    if positions is None:
        return body + _SUFFIX
    return body + b'],"positions":' + encoder.encode(positions) + b"}"


@dataclass(frozen=True, slots=True)
class ItemFailure:
    """An item (or a whole record, ``index`` None) that cannot become a reading."""

    index: int | None
    error: ValidationFailure
    original: bytes
    """What a dead letter keeps: a one-item envelope when the item decoded, else its bytes."""

    def __post_init__(self) -> None:
        # A caught failure's traceback (and its cause's) reaches, through the frames' callers,
        # the frame that holds this failure: a reference cycle that would keep the whole
        # batch alive until a garbage collection. The dead letter needs only the errors.
        detach(self.error)


@dataclass(frozen=True, slots=True)
class RawRecord:
    """What one ``fleet.raw.v1`` record holds: the readings that decoded, and the failures."""

    events: Sequence[RawEvent]
    failures: Sequence[ItemFailure]
    enveloped: bool = True
    """False for a single reading in an older format: its record value is its original."""


def decode_raw_record(
    value: bytes | None, *, record_id: str, record_time: datetime, format_header: bytes | None
) -> RawRecord:
    """Decode a raw record of any accepted format; never raises for bad input.

    ``record_id`` ("topic/partition/offset") seeds the event id of a bare reading without one,
    and ``record_time`` (the Kafka timestamp) becomes its ``received_at``.
    """
    if not value:
        failure = ValidationFailure.single((), "empty record: no value", "json")
        return RawRecord((), [ItemFailure(None, failure, b"")])
    if format_header == RAW_FORMAT.encode() or value.startswith(_RAW_PREFIX):
        return _decode_envelope(value)
    return _decode_single(value, record_id, record_time)


def _decode_envelope(value: bytes) -> RawRecord:
    try:
        return RawRecord(decode_json(_raw_envelope_decoder, value).items, ())
    except ValidationFailure:
        pass  # find out which items are bad, keep the good ones
    try:
        loose = decode_json(_loose_decoder, value)
    except ValidationFailure as failure:
        return RawRecord((), [ItemFailure(None, failure, value)])
    events: list[RawEvent] = []
    failures: list[ItemFailure] = []
    for index, raw in enumerate(loose.items):
        try:
            events.append(decode_json(raw_event_decoder, raw))
        except ValidationFailure as failure:
            failures.append(ItemFailure(index, failure.with_prefix("items", index), bytes(raw)))
    return RawRecord(events, failures)


def _decode_single(value: bytes, record_id: str, record_time: datetime) -> RawRecord:
    try:
        return RawRecord([decode_json(raw_event_decoder, value)], (), enveloped=False)
    except ValidationFailure as as_event:
        if b'"payload"' in value:  # it meant to be a RawEvent: report that
            return RawRecord((), [ItemFailure(None, as_event, value)], enveloped=False)
    try:
        reading = decode_reading(value, now=record_time)
    except ValidationFailure as as_reading:
        return RawRecord((), [ItemFailure(None, as_reading, value)], enveloped=False)
    event_id = reading.event_id or str(uuid.uuid5(_RECORD_NAMESPACE, record_id))
    event = RawEvent(
        event_id=event_id,
        device_id=reading.device_id,
        received_at=record_time,
        source="kafka",
        payload=msgspec.Raw(value),
    )
    return RawRecord([event], (), enveloped=False)


class _CuratedEnvelope(msgspec.Struct, frozen=True):
    format: str
    items: list[msgspec.Raw]
    positions: list[Position] | None = None


@dataclass(frozen=True, slots=True)
class CuratedBatch:
    """A curated envelope: its encoded items and, when the writer recorded them, positions."""

    items: list[msgspec.Raw]
    positions: list[Position] | None


class _CuratedItems(msgspec.Struct, frozen=True):
    """A curated envelope read without its positions (msgspec skips them unbuilt)."""

    format: str
    items: list[msgspec.Raw]


_curated_decoder = msgspec.json.Decoder(_CuratedEnvelope)
_curated_items_decoder = msgspec.json.Decoder(_CuratedItems)


def decode_curated_items(value: bytes | None) -> list[msgspec.Raw]:
    """The encoded items of a curated envelope (raises ValidationFailure if it is not one).

    For readers that dedupe without positions (the sinks): building a tuple per item for the
    positions cost about as much as reading the rest of the envelope."""
    if not value:
        raise ValidationFailure.single((), "empty record: no value", "json")
    envelope = decode_json(_curated_items_decoder, value)
    _check_format(envelope.format)
    return envelope.items


def decode_curated_envelope(value: bytes | None) -> CuratedBatch:
    """Items and positions of a curated envelope (raises ValidationFailure if it is not one)."""
    if not value:
        raise ValidationFailure.single((), "empty record: no value", "json")
    envelope = decode_json(_curated_decoder, value)
    _check_format(envelope.format)
    _check_positions(envelope.positions, len(envelope.items))
    return CuratedBatch(envelope.items, envelope.positions)


ItemT = TypeVar("ItemT")


class _TypedCurated(msgspec.Struct, Generic[ItemT], frozen=True, gc=False):
    format: str
    items: list[ItemT]
    positions: list[Position] | None = None


class _TypedCuratedItems(msgspec.Struct, Generic[ItemT], frozen=True, gc=False):
    """Without positions: msgspec skips them unbuilt (see :func:`decode_curated_items`)."""

    format: str
    items: list[ItemT]


class CuratedRead(Generic[ItemT]):
    """A curated envelope read into items of one type (:class:`CuratedReader`)."""

    __slots__ = ("_raws", "_value", "failures", "indexes", "items", "positions")

    def __init__(
        self,
        value: bytes,
        items: list[ItemT],
        indexes: Sequence[int],
        positions: list[Position] | None,
        failures: list[ItemFailure],
        raws: list[msgspec.Raw] | None = None,
    ) -> None:
        self._value = value
        self.items = items
        """The items that decoded, in order."""
        self.indexes = indexes
        """Each item's index in the envelope (a range unless some failed)."""
        self.positions = positions
        """Each item's position, when the reader was asked for them and the writer recorded
        them."""
        self.failures = failures
        """The items that did not decode (each with its index and bytes)."""
        self._raws = raws

    def raws(self) -> list[msgspec.Raw]:
        """Each item's encoded bytes, read from the envelope on first use: most readers need
        them only for a dead letter."""
        if self._raws is None:
            every = decode_curated_items(self._value)
            self._raws = every if not self.failures else [every[i] for i in self.indexes]
        return self._raws


class CuratedReader(Generic[ItemT]):
    """Reads curated envelopes into ``item_type`` items: the whole envelope in one decode.

    Four consumers read every curated reading; decoding each item on its own (a Python call and
    a ``try`` per item around msgspec) cost them 3-5 µs an item, one decode of the envelope
    into a typed list ~1 µs. Only an envelope with an item that does not decode is read again
    item by item, to keep the good items and name the bad ones.
    """

    __slots__ = ("_envelope", "_item", "_positions")

    def __init__(self, item_type: type[ItemT], *, positions: bool = False):
        envelope = _TypedCurated[item_type] if positions else _TypedCuratedItems[item_type]  # type: ignore[valid-type]
        self._envelope: msgspec.json.Decoder[_TypedCurated[ItemT] | _TypedCuratedItems[ItemT]]
        self._envelope = msgspec.json.Decoder(envelope)
        self._item = msgspec.json.Decoder(item_type)
        self._positions = positions

    def read(self, value: bytes | None) -> CuratedRead[ItemT]:
        """The envelope's items (raises ValidationFailure if the record is not an envelope)."""
        if not value:
            raise ValidationFailure.single((), "empty record: no value", "json")
        try:
            envelope = self._envelope.decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeError, RecursionError):
            return self._read_each(value)
        _check_format(envelope.format)
        positions = envelope.positions if isinstance(envelope, _TypedCurated) else None
        _check_positions(positions, len(envelope.items))
        return CuratedRead(value, envelope.items, range(len(envelope.items)), positions, [])

    def _read_each(self, value: bytes) -> CuratedRead[ItemT]:
        batch = decode_curated_envelope(value)
        items: list[ItemT] = []
        indexes: list[int] = []
        raws: list[msgspec.Raw] = []
        failures: list[ItemFailure] = []
        for index, raw in enumerate(batch.items):
            try:
                items.append(decode_json(self._item, raw))
            except ValidationFailure as failure:
                failures.append(ItemFailure(index, failure, bytes(raw)))
                continue
            indexes.append(index)
            raws.append(raw)
        positions = batch.positions if self._positions else None
        kept = None if positions is None else [positions[index] for index in indexes]
        return CuratedRead(value, items, indexes, kept, failures, raws)


def _check_positions(positions: list[Position] | None, items: int) -> None:
    if positions is not None and len(positions) != items:
        message = f"{len(positions)} positions for {items} items"
        raise ValidationFailure.single(("positions",), message, "length")


def _check_format(name: str) -> None:
    if name != CURATED_FORMAT:
        message = f"format {name!r} is not {CURATED_FORMAT!r}"
        raise ValidationFailure.single(("format",), message, "value")
