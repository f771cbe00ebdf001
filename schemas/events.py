"""Kafka message contracts (JSON-encoded with msgspec).

======================  ===========  ================================  ==========================
topic                   key          value                             produced by
======================  ===========  ================================  ==========================
``fleet.raw.v1``        (partition)  envelopes of :class:`RawEvent`    HTTP / MQTT / upload edge
                                     (``schemas.envelopes``)
``fleet.readings.v1``   device_id    a :class:`CuratedReading` in      validate agent
                                     Avro (``schemas.avro_codec``)
``fleet.deadletter.v1`` source key   :class:`DeadLetter`               any stage that gives up
======================  ===========  ================================  ==========================

The validate agent (``agents/validate.py``) decodes raw envelopes and calls
:func:`validate_event_with_sensors` for each item; it raises
:class:`~schemas.errors.ValidationFailure` for any bad reading, which the caller turns into a
dead letter (``agents.deadletters``).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, NamedTuple, cast

import msgspec
import uuid_utils
from msgspec import Meta

from schemas.catalogue import CATALOGUE, SENSOR_NAME_PATTERN, GenericLimits, decode_generic
from schemas.errors import FieldError, ValidationFailure, field_error_from_message, one_line
from schemas.readings import AwareDatetime, DeviceId, EventId, Metadata, Reading
from schemas.validation import (
    DEFAULT_GENERIC_LIMITS,
    DEFAULT_MAX_FUTURE,
    JsonInput,
    check_generic_limits,
    check_timestamp,
    decode_json,
    decode_reading,
    require_aware,
)

__all__ = [
    "ENVELOPE_SCHEMA",
    "IDEMPOTENCY_NAMESPACE",
    "MQTT_NAMESPACE",
    "CuratedReading",
    "DeadLetter",
    "Enrichment",
    "RawEvent",
    "Source",
    "ValidatedEvent",
    "curate",
    "curated_decoder",
    "dead_letter_decoder",
    "dead_letter_for",
    "decode_curated",
    "decode_dead_letter",
    "decode_raw_event",
    "encode_curated",
    "encode_dead_letter",
    "encode_raw_event",
    "encoder",
    "event_id_for",
    "new_event_id",
    "raw_event_decoder",
    "raw_event_for",
    "uuid5_text",
    "validate_event_with_sensors",
]

UnknownSensors = Literal["deadletter", "generic"]
"""What the worker does with sensor types not in the catalogue (a FLEET_STREAM__ setting)."""
Source = Literal["http", "mqtt", "upload", "kafka"]
"""Where a reading came in; ``kafka`` is a bare reading a third party produced to the topic."""
ENVELOPE_SCHEMA: Final = 1


class RawEvent(msgspec.Struct, frozen=True):
    """Envelope on ``fleet.raw.v1`` around one reading exactly as received.

    ``payload`` holds the reading's JSON bytes verbatim (``msgspec.Raw`` is
    spliced into the envelope unmodified), so the worker re-validates - and a
    dead letter carries - the original.  It must therefore be valid JSON;
    the edge guarantees that by validating before producing.

    Unknown envelope fields are ignored (forward compatibility: a newer edge
    may add optional fields); breaking changes bump ``schema``.
    ``received_at`` is normalised to UTC and ``event_id`` to lower case.
    """

    event_id: EventId
    device_id: DeviceId
    received_at: AwareDatetime
    source: Source
    payload: msgspec.Raw
    schema: Literal[1] = ENVELOPE_SCHEMA
    replayed: Annotated[int, Meta(ge=0)] | msgspec.UnsetType = msgspec.UNSET
    """How often ``fleetstream deadletters replay`` put this reading back; absent (never) is
    omitted when encoded, so ordinary envelopes do not grow."""

    @property
    def replay_count(self) -> int:
        return 0 if isinstance(self.replayed, msgspec.UnsetType) else self.replayed

    def __post_init__(self) -> None:
        # Runs for every decoded reading: what the edge wrote (UTC, lower case) is left alone.
        if self.received_at.tzinfo is not UTC:
            self._received_at_to_utc()
        if not self.event_id.islower():  # islower(): every letter already lower case
            msgspec.structs.force_setattr(self, "event_id", self.event_id.lower())

    def _received_at_to_utc(self) -> None:
        # Meta(tz=True) is only enforced when decoding; direct construction lands here.
        if self.received_at.tzinfo is None or self.received_at.utcoffset() is None:
            raise ValueError("received_at must be timezone-aware")
        try:
            received_utc = self.received_at.astimezone(UTC)
        except OverflowError as exc:  # msgspec only wraps ValueError/TypeError
            raise ValueError("received_at is out of range") from exc
        msgspec.structs.force_setattr(self, "received_at", received_utc)


class Enrichment(msgspec.Struct, frozen=True, kw_only=True):
    """What the device registry adds to a reading (``fleet.devices.v1``, via the worker)."""

    device_name: str | None = None
    profile: str | None = None
    location: Any = None
    """The device's ``metadata.location`` (any JSON value), if the registry has one."""
    tags: list[str] = []


class CuratedReading(msgspec.Struct, frozen=True, kw_only=True):
    """A validated, enriched reading on ``fleet.readings.v1``, for analytics and sinks.

    ``ts`` is the device timestamp, or ``received_at`` when the device sent
    none; both are UTC.  ``sensors`` is the validated sensors object as JSON
    (decode it with ``msgspec.json.decode``): absent sensors/fields are
    omitted (and ``mq134.unit``, whose only value is ``"ppm"``).

    Fields after ``metadata`` were added by the stream core and are optional,
    so records written before them still decode: the device's registry entry
    (``device_name``, ``profile``, ``location``, ``tags``; all empty when the
    registry does not know the device), when the worker curated the reading
    (``processed_at``) and how long after the edge received it (``lag_ms``),
    and how often it was replayed from the dead-letter topic.
    """

    schema_version: int = 1
    event_id: str
    device_id: str
    ts: datetime
    received_at: datetime
    source: Source
    sensors: msgspec.Raw
    metadata: Metadata | None = None
    device_name: str | None = None
    profile: str | None = None
    location: Any = None
    tags: list[str] = []
    processed_at: datetime | None = None
    lag_ms: float | None = None
    replayed: int = 0


class DeadLetter(msgspec.Struct, frozen=True, kw_only=True):
    """A message some stage gave up on, on ``fleet.deadletter.v1``.

    ``original`` is the failed Kafka message value byte-for-byte; in JSON it is
    a base64 string (msgspec's encoding of ``bytes``), decoded back to bytes
    by :func:`decode_dead_letter`.  ``errors`` may be empty (e.g. a sink error).
    """

    stage: str
    reason: str
    errors: list[FieldError] = []
    error_type: str
    source_topic: str
    partition: int
    offset: int
    key: str | None
    original: bytes
    failed_at: datetime
    event_id: str | None = None
    item: int | None = None
    """Index of the failed reading in an envelope; None when the whole record failed."""
    original_truncated: bool = False
    """True when ``original`` was cut to ``MAX_ORIGINAL_BYTES`` so the letter fits its topic."""


MAX_ORIGINAL_BYTES: Final = 2 * 1024 * 1024
"""A dead letter keeps at most this much of the original (base64 in JSON: x4/3, under 4 MiB)."""

encoder = msgspec.json.Encoder()
raw_event_decoder = msgspec.json.Decoder(RawEvent)
curated_decoder = msgspec.json.Decoder(CuratedReading)
dead_letter_decoder = msgspec.json.Decoder(DeadLetter)


def new_event_id() -> str:
    """A fresh UUIDv7 (time-ordered, so ids sort roughly by creation time)."""
    return str(uuid_utils.uuid7())


IDEMPOTENCY_NAMESPACE: Final = uuid.UUID("6f1d9a52-8c1e-4a8e-9a39-2f0b4b7f4d11").bytes
"""uuid5 namespace (its 16 bytes) of HTTP readings sent with an ``Idempotency-Key``."""
MQTT_NAMESPACE: Final = uuid.UUID("4d7c2a0e-93b1-4f6a-8e55-0c1d9e7b6a21").bytes
"""uuid5 namespace (its 16 bytes) of timestamped MQTT readings."""


def event_id_for(reading: Reading, namespace: bytes, resend: str | None) -> str:
    """The event id an edge gives a reading it received; the one rule of every edge.

    The reading's own ``event_id`` wins. Else, when the edge can name the delivery so that a
    resend of the same reading gets the same name (``resend``), the id is the uuid5 of that name
    in the edge's ``namespace``: the resend maps onto the same event and the sinks store it
    once. Else a fresh UUIDv7.
    """
    if reading.event_id is not None:
        return reading.event_id
    if resend is not None:
        return uuid5_text(namespace, resend)
    return new_event_id()


def uuid5_text(namespace: bytes, name: str) -> str:
    """``str(uuid.uuid5(uuid.UUID(bytes=namespace), name))`` without the UUID objects (once per
    reading on the edges): SHA-1 of namespace and name, version 5 and RFC 4122 variant bits."""
    d = bytearray(hashlib.sha1(namespace + name.encode(), usedforsecurity=False).digest())
    d[6] = (d[6] & 0x0F) | 0x50
    d[8] = (d[8] & 0x3F) | 0x80
    h = d[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def raw_event_for(
    reading: Reading,
    payload: bytes | msgspec.Raw,
    *,
    source: Source,
    received_at: datetime,
) -> RawEvent:
    """Build the envelope for a validated reading (edge helper).

    ``payload`` is the reading's JSON exactly as received (see
    ``decode_readings_with_raw``).  The client's ``event_id`` is reused for
    idempotency; otherwise a new UUIDv7 is generated.
    """
    require_aware(received_at, "received_at")
    raw = payload if isinstance(payload, msgspec.Raw) else msgspec.Raw(payload)
    return RawEvent(
        event_id=reading.event_id or new_event_id(),
        device_id=reading.device_id,
        received_at=received_at,
        source=source,
        payload=raw,
    )


def encode_raw_event(event: RawEvent) -> bytes:
    """JSON bytes for ``fleet.raw.v1``."""
    return encoder.encode(event)


def decode_raw_event(data: JsonInput) -> RawEvent:
    """Decode an envelope; malformed ones raise ValidationFailure (loc is envelope-relative)."""
    return decode_json(raw_event_decoder, data)


def encode_curated(reading: CuratedReading) -> bytes:
    """JSON bytes for ``fleet.readings.v1``."""
    return encoder.encode(reading)


def decode_curated(data: JsonInput) -> CuratedReading:
    """Decode a curated reading; raises ValidationFailure."""
    return decode_json(curated_decoder, data)


def encode_dead_letter(letter: DeadLetter) -> bytes:
    """JSON bytes for ``fleet.deadletter.v1``."""
    return encoder.encode(letter)


def decode_dead_letter(data: JsonInput) -> DeadLetter:
    """Decode a dead letter (``original`` back to bytes); raises ValidationFailure."""
    return decode_json(dead_letter_decoder, data)


_NO_ENRICHMENT: Final = Enrichment()


def curate(
    raw: RawEvent,
    reading: Reading | _LenientReading,
    *,
    sensors: msgspec.Raw | None = None,
    enrichment: Enrichment | None = None,
    now: datetime | None = None,
) -> CuratedReading:
    """Combine an envelope and its validated reading into the analytics record.

    ``reading`` must come from the validator (its timestamp is range-checked). ``sensors`` is
    the sensors JSON when the caller has it already; ``now`` (the processing time) gives
    ``processed_at`` and ``lag_ms``.
    """
    ts = raw.received_at if reading.timestamp is None else reading.timestamp.astimezone(UTC)
    extra = enrichment or _NO_ENRICHMENT
    lag_ms = None if now is None else (now - raw.received_at).total_seconds() * 1000
    return CuratedReading(
        event_id=raw.event_id,
        device_id=raw.device_id,
        ts=ts,
        received_at=raw.received_at,
        source=raw.source,
        sensors=sensors or msgspec.Raw(encoder.encode(reading.sensors)),
        metadata=reading.metadata,
        device_name=extra.device_name,
        profile=extra.profile,
        location=extra.location,
        tags=extra.tags,
        processed_at=now,
        lag_ms=lag_ms,
        replayed=raw.replay_count,
    )


class ValidatedEvent(NamedTuple):
    curated: CuratedReading
    sensors: Any
    """The validator's ``Sensors`` struct ``curated.sensors`` was encoded from; None when the
    generic rules read them (``unknown_sensors="generic"``)."""


def validate_event_with_sensors(
    raw: RawEvent,
    *,
    now: datetime,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
    enrichment: Enrichment | None = None,
    unknown_sensors: UnknownSensors = "deadletter",
    limits: GenericLimits = DEFAULT_GENERIC_LIMITS,
) -> ValidatedEvent:
    """Validate the reading an envelope item carries and curate it, also giving the validated
    sensors (the Avro writer reads them instead of decoding ``curated.sensors`` again).

    Reading errors are located under ``payload`` (``loc == ("payload", "sensors", ...)``),
    because a dead letter's ``original`` is the envelope, and carry the envelope's event_id.
    With ``unknown_sensors="generic"`` a sensor type the catalogue lacks is accepted if it
    passes the generic rules (named finite numbers and booleans) instead of failing; ``limits``
    bound the fields of the sensors the generic rules read, all of them together per reading.
    """
    sensors: msgspec.Raw | None = None
    reading: Reading | _LenientReading
    try:
        reading = decode_reading(raw.payload, now=now, max_future=max_future, limits=limits)
    except ValidationFailure as exc:
        if unknown_sensors == "generic" and _unknown_sensor_type(exc):
            reading, sensors = _decode_lenient(raw, now=now, max_future=max_future, limits=limits)
        else:
            raise exc.with_prefix("payload", event_id=raw.event_id) from exc
    if reading.device_id != raw.device_id:
        message = f"device_id {reading.device_id!r} does not match the envelope's {raw.device_id!r}"
        error = FieldError(("payload", "device_id"), message, "mismatch")
        raise ValidationFailure([error], event_id=raw.event_id)
    curated = curate(raw, reading, sensors=sensors, enrichment=enrichment, now=now)
    return ValidatedEvent(curated, None if sensors is not None else reading.sensors)


def _unknown_sensor_type(exc: ValidationFailure) -> bool:
    return any(
        error.type == "unknown_field" and len(error.loc) == 2 and error.loc[0] == "sensors"
        for error in exc.errors
    )


class _LenientReading(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A reading whose sensors are still raw JSON: known types are checked one by one."""

    device_id: DeviceId
    sensors: Annotated[
        dict[Annotated[str, Meta(pattern=SENSOR_NAME_PATTERN)], msgspec.Raw], Meta(min_length=1)
    ]
    timestamp: AwareDatetime | None = None
    event_id: EventId | None = None
    metadata: Metadata | None = None


_lenient_decoder = msgspec.json.Decoder(_LenientReading)
_type_decoders: dict[str, msgspec.json.Decoder[Any]] = {
    sensor.name: msgspec.json.Decoder(sensor.schema) for sensor in CATALOGUE
}


def _decode_lenient(
    raw: RawEvent, *, now: datetime, max_future: timedelta, limits: GenericLimits
) -> tuple[_LenientReading, msgspec.Raw]:
    """The reading with unknown sensor types read by the generic rules, and its sensors JSON."""
    try:
        reading = decode_json(_lenient_decoder, raw.payload)
        check_timestamp(cast(Reading, reading), now=now, max_future=max_future)
    except ValidationFailure as exc:
        raise exc.with_prefix("payload", event_id=raw.event_id) from exc
    sensors: dict[str, Any] = {}
    generic: list[tuple[str, dict[str, Any]]] = []
    for name, value in reading.sensors.items():
        decoder = _type_decoders.get(name)
        try:
            sensors[name] = decode_generic(value) if decoder is None else decoder.decode(value)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            error = field_error_from_message(str(exc)).with_prefix("payload", "sensors", name)
            raise ValidationFailure([error], event_id=raw.event_id) from exc
        if decoder is None or name == "generic":
            generic.append((name, sensors[name]))
    try:
        check_generic_limits(generic, limits)
    except ValidationFailure as exc:
        raise exc.with_prefix("payload", event_id=raw.event_id) from exc
    return reading, msgspec.Raw(encoder.encode(sensors))


def dead_letter_for(
    exc: BaseException,
    *,
    stage: str,
    source_topic: str,
    partition: int,
    offset: int,
    key: str | None,
    original: bytes,
    failed_at: datetime,
    event_id: str | None = None,
    item: int | None = None,
) -> DeadLetter:
    """Build a dead letter from the exception that made ``stage`` give up.

    A ValidationFailure contributes its reason, errors and event_id; any other
    exception contributes ``"<Type>: <message>"`` (one line) and no errors.
    """
    if isinstance(exc, ValidationFailure):
        reason, errors = exc.reason, exc.errors
        event_id = event_id or exc.event_id
    else:
        reason, errors = one_line(f"{type(exc).__name__}: {exc}"), []
    truncated = len(original) > MAX_ORIGINAL_BYTES
    return DeadLetter(
        stage=stage,
        reason=reason,
        errors=errors,
        error_type=_qualified_name(type(exc)),
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=key,
        original=original[:MAX_ORIGINAL_BYTES] if truncated else original,
        failed_at=failed_at,
        event_id=event_id,
        item=item,
        original_truncated=truncated,
    )


def _qualified_name(cls: type[BaseException]) -> str:
    # "asyncpg.exceptions.UniqueViolationError" says more than the bare name;
    # builtins stay short ("ValueError").
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"
