"""Validate and curate: raw envelopes → curated envelopes, analytics records, dead letters.

For a taken batch of ``fleet.raw.v1`` records every reading ends up in exactly one place:

* valid: curated once, then written twice from the same bytes: into a curated envelope on
  ``fleet.curated.v1`` (the partition of its device, for the sinks) and as its own record on
  ``fleet.readings.v1`` (keyed by device_id, for analytics);
* invalid (bad JSON, a failed rule, an undecodable item, even a validator bug): a dead letter
  on ``fleet.deadletter.v1`` with the reason and what is needed to replay it.

The batch's records are acked only after every output was acked by the broker.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.context import WorkerContext, guarded
from agents.deadletters import KafkaMessage, dead_letter
from agents.outputs import Outputs
from connectors.kafka.partitioner import partition_for
from connectors.kafka.producer import Record
from schemas.envelopes import (
    CURATED_FORMAT,
    FORMAT_HEADER,
    curated_envelope,
    decode_raw_record,
    single_item_envelope,
)
from schemas.errors import ValidationFailure
from schemas.events import RawEvent, encode_curated, validate_event
from streams.settings import TopicSettings

log = logging.getLogger(__name__)

STAGE = "validate"
_CURATED_HEADERS: list[tuple[str, str | bytes | None]] = [(FORMAT_HEADER, CURATED_FORMAT.encode())]


@dataclass(frozen=True)
class Validation:
    """The validate step for one batch, without Faust: messages in, outputs out."""

    topics: TopicSettings
    curated_partitions: int
    envelope_max_bytes: int

    def run(self, messages: Sequence[KafkaMessage], now: datetime) -> Outputs:
        outputs = Outputs()
        curated: dict[int, list[bytes]] = defaultdict(list)
        for message in messages:
            self._one_record(message, now, outputs, curated)
        for partition, items in curated.items():
            for chunk in _chunks(items, self.envelope_max_bytes):
                record = Record(None, curated_envelope(chunk), partition, _CURATED_HEADERS)
                outputs.add(self.topics.curated, record)
        return outputs

    def _one_record(
        self,
        message: KafkaMessage,
        now: datetime,
        outputs: Outputs,
        curated: dict[int, list[bytes]],
    ) -> None:
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
            outputs.add(deadletter, letter)
        for event in record.events:
            try:
                value = encode_curated(validate_event(event, now=now))
            except Exception as exc:  # noqa: BLE001 - a dead letter, whatever went wrong
                original = single_item_envelope(event) if record.enveloped else message.value
                outputs.add(deadletter, self._letter(message, event, original, exc, now))
                continue
            key = event.device_id.encode()
            outputs.add(self.topics.readings, Record(key, value))
            curated[partition_for(event.device_id, self.curated_partitions)].append(value)

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


def _header(headers: Any, name: str) -> bytes | None:
    """A header's value from Faust's headers (a mapping or a list of pairs)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    for key, value in pairs:
        if key == name:
            return value if isinstance(value, bytes) else None
    return None


_ENVELOPE_OVERHEAD = len(curated_envelope([]))


def _chunks(items: list[bytes], max_bytes: int) -> Iterator[list[bytes]]:
    """``items`` in runs whose encoded envelope stays under ``max_bytes``."""
    chunk: list[bytes] = []
    size = _ENVELOPE_OVERHEAD
    for item in items:
        if chunk and size + len(item) + 1 > max_bytes:
            yield chunk
            chunk, size = [], _ENVELOPE_OVERHEAD
        chunk.append(item)
        size += len(item) + 1
    if chunk:
        yield chunk


def register(ctx: WorkerContext) -> None:
    worker = ctx.settings.worker

    async def validate(stream: Any) -> None:
        producer = await ctx.producer()
        validation = Validation(
            topics=ctx.settings.topics,
            curated_partitions=await producer.partition_count(ctx.settings.topics.curated),
            envelope_max_bytes=ctx.settings.kafka.envelope_max_bytes,
        )
        async for events in stream.noack_take(worker.validate_batch_max, worker.batch_within_s):
            outputs = validation.run([event.message for event in events], datetime.now(UTC))
            _log_letters(outputs.records(ctx.settings.topics.deadletter))
            await ctx.publish(outputs)
            for event in events:
                await stream.ack(event)

    ctx.app.agent(ctx.topics.raw, name="validate")(guarded("validate", validate))


def _log_letters(letters: list[Record]) -> None:
    if letters:
        log.warning("%d readings of this batch went to the dead-letter topic", len(letters))
