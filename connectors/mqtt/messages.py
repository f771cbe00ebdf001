"""From one MQTT message to envelope items or a dead letter (no I/O here).

The device id comes from the topic: each subscribed pattern has exactly one ``+``, and what the
topic has in its place is the device (``neurobuild/sensors/esp32-01/data`` → ``esp32-01``). The
payload is what the HTTP edge takes: one reading or a JSON array of readings, checked by the
shared validator. A message is all or nothing, like an HTTP batch: any invalid reading, a reading
naming another device, a topic that names none, or a payload over the limit makes the whole
message one dead letter (stage ``mqtt``) with the reason and the original bytes.

Event ids follow :func:`schemas.events.event_id_for`. What names a resend here is a reading's
device and exact bytes: MQTT redelivers a message whose PUBACK was lost (a crash, a broken
connection), and the redelivery then carries the same ids, so the sinks store it once. Only
for readings with a timestamp: those without are stamped with the receive time, so they are
not the same reading on redelivery and get a fresh UUIDv7.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

from connectors.kafka.producer import Record
from schemas import contract_wire as wire
from schemas.catalogue import GenericLimits
from schemas.envelopes import encode_item
from schemas.errors import FieldError, ValidationFailure
from schemas.events import (
    MQTT_NAMESPACE,
    RawEvent,
    dead_letter_for,
    event_id_for,
)
from schemas.readings import Reading
from schemas.validation import DEFAULT_GENERIC_LIMITS, decode_readings_with_raw

STAGE = "mqtt"

Item = tuple[str, bytes]
"""(device_id, encoded RawEvent): what the envelope batcher takes."""


class TopicMatcher:
    """Which device a topic names, for patterns like ``neurobuild/sensors/+/data``."""

    def __init__(self, patterns: Sequence[str]) -> None:
        self._parts: list[tuple[str, str]] = []
        for pattern in patterns:
            levels = pattern.split("/")
            if levels.count("+") != 1 or "#" in levels:
                raise ValueError(f"topic pattern {pattern!r} needs exactly one '+' and no '#'")
            index = levels.index("+")
            prefix = "/".join(levels[:index])
            suffix = "/".join(levels[index + 1 :])
            self._parts.append((f"{prefix}/" if prefix else "", f"/{suffix}" if suffix else ""))

    def device_id(self, topic: str) -> str | None:
        for prefix, suffix in self._parts:
            if len(topic) > len(prefix) + len(suffix) and topic.startswith(prefix):
                if suffix and not topic.endswith(suffix):
                    continue
                middle = topic[len(prefix) : len(topic) - len(suffix)]
                if "/" not in middle:
                    return middle
        return None


@dataclass(frozen=True, slots=True)
class Decoded:
    """A message that passed: its envelope items (one per reading)."""

    items: list[Item]


def _resend(reading: Reading, raw: bytes) -> str | None:
    if reading.event_id is not None or reading.timestamp is None:
        return None  # its own id wins (no hash needed); unstamped: no id to repeat
    return f"{reading.device_id}\x00{hashlib.sha256(raw).hexdigest()}"


def decode_message(
    topic: str,
    payload: bytes,
    *,
    matcher: TopicMatcher,
    received_at: datetime,
    max_items: int,
    max_bytes: int,
    limits: GenericLimits = DEFAULT_GENERIC_LIMITS,
) -> Decoded:
    """The items of one message; raises ValidationFailure when it must become a dead letter
    (``limits``: the ``FLEET_GENERIC__*`` bounds)."""
    device_id = matcher.device_id(topic)
    if device_id is None:
        raise ValidationFailure.single((), f"topic {topic!r} names no device", "topic")
    if len(payload) > max_bytes:
        message = f"payload of {len(payload)} bytes; at most {max_bytes} allowed"
        raise ValidationFailure.single((), message, "length")
    readings = decode_readings_with_raw(
        payload, now=received_at, max_items=max_items, limits=limits
    )
    items: list[Item] = []
    for index, (reading, raw) in enumerate(readings):
        if reading.device_id != device_id:
            loc = ("device_id",) if len(readings) == 1 else (index, "device_id")
            message = f"device_id {reading.device_id!r} is not the topic's device {device_id!r}"
            raise ValidationFailure([FieldError(loc, message, "mismatch")])
        event = RawEvent(
            event_id=event_id_for(reading, MQTT_NAMESPACE, _resend(reading, bytes(raw))),
            device_id=device_id,
            received_at=received_at,
            source="mqtt",
            payload=msgspec.Raw(raw),
        )
        items.append((device_id, encode_item(event)))
    return Decoded(items)


def dead_letter_record(
    topic: str, payload: bytes, error: BaseException, failed_at: datetime, device_id: str | None
) -> Record:
    """The ``fleet.deadletter.v1`` record of a message that failed (``source_topic`` is
    ``mqtt:<topic>``; MQTT has no partition or offset: both are -1)."""
    letter = dead_letter_for(
        error,
        stage=STAGE,
        source_topic=f"mqtt:{topic}",
        partition=-1,
        offset=-1,
        key=device_id,
        original=payload,
        failed_at=failed_at,
    )
    return Record(device_id.encode() if device_id else None, wire.encode_dead_letter(letter))
