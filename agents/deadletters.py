"""Dead letters for what a stage gave up on: a whole Kafka record, or one reading inside it."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from connectors.kafka.producer import Record
from schemas.contract_wire import encode_dead_letter
from schemas.envelopes import ItemFailure
from schemas.events import dead_letter_for
from streams.metrics import METRICS


class KafkaMessage(Protocol):
    """The fields of a consumed record that agents read (Faust's ``Message``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float
    headers: Any


def dead_letter(
    stage: str,
    message: KafkaMessage,
    error: BaseException,
    now: datetime,
    *,
    original: bytes | None = None,
    key: str | None = None,
    event_id: str | None = None,
    item: int | None = None,
) -> Record:
    """The dead-letter record for ``message`` (or its reading ``item``) that failed with
    ``error``. ``original`` defaults to the message value; ``key`` to the message key."""
    METRICS.dead_lettered(stage)
    if key is None and message.key is not None:
        key = message.key.decode("utf-8", "replace")
    letter = dead_letter_for(
        error,
        stage=stage,
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key,
        original=message.value or b"" if original is None else original,
        failed_at=now,
        event_id=event_id,
        item=item,
    )
    return Record(key.encode() if key else None, encode_dead_letter(letter))


def item_letters(
    stage: str, message: KafkaMessage, failures: Sequence[ItemFailure], now: datetime
) -> list[Record]:
    """A dead letter for each item of ``message`` that did not decode (each names its index)."""
    return [
        dead_letter(stage, message, f.error, now, original=f.original, item=f.index)
        for f in failures
    ]
