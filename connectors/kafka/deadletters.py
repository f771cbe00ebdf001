"""The dead-letter topic from outside the pipeline: read letters, and replay their readings.

Shared by ``fleetstream deadletters`` (CLI) and the worker's operator views, so a letter is
replayed the same way from both. Everything here is blocking (confluent-kafka): async callers
run it in a thread.

Replaying puts the readings of a letter back on ``fleet.raw.v1`` (as envelopes on their device's
partition, acked with ``acks=all``), so the validate agent reads them again. Every replayed
reading carries ``replayed`` + 1; a reading already replayed ``max_replays`` times is not
replayed (and the validate agent dead-letters one that was), so a replay loop cannot happen.
Replayed readings keep their event ids: the sinks store each once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import msgspec
from confluent_kafka import Consumer, Producer, TopicPartition

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.partitioner import partition_for
from connectors.kafka.range_reader import partition_ends, read_range, tool_consumer
from connectors.kafka.security import client_config
from schemas.contract_wire import decode_dead_letter
from schemas.envelopes import FORMAT_HEADER, RAW_FORMAT, decode_raw_record, encode_item
from schemas.envelopes import raw_envelope as build_raw_envelope
from schemas.events import DeadLetter, RawEvent, curated_decoder


def _reader(bootstrap_servers: str) -> Consumer:
    return tool_consumer(bootstrap_servers, "deadletters")


def read_letters(bootstrap_servers: str, topic: str, stall_s: float = 30.0) -> Iterator[DeadLetter]:
    """Every dead letter now on ``topic``, however many (undecodable records are skipped).
    Raises KafkaUnavailable when the broker gives nothing for ``stall_s``."""
    consumer = _reader(bootstrap_servers)
    try:
        ends = partition_ends(consumer, topic)
        for message in read_range(consumer, topic, {}, ends, stall_s=stall_s):
            try:
                yield decode_dead_letter(message.value() or b"")
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
    finally:
        consumer.close()


def read_letter_at(
    bootstrap_servers: str, topic: str, partition: int, offset: int, timeout_s: float = 10.0
) -> DeadLetter | None:
    """The letter at ``partition``/``offset`` of ``topic``; None when no letter is there
    (offset out of range, or not a dead letter). Raises KafkaUnavailable on a timeout."""
    consumer = _reader(bootstrap_servers)
    try:
        low, high = consumer.get_watermark_offsets(
            TopicPartition(topic, partition), timeout=timeout_s
        )
        if not low <= offset < high:
            return None
        consumer.assign([TopicPartition(topic, partition, offset)])
        for _ in range(int(timeout_s / 0.2)):
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            if message.offset() != offset:  # compacted away: the next record came instead
                return None
            try:
                return decode_dead_letter(message.value() or b"")
            except (msgspec.DecodeError, msgspec.ValidationError):
                return None
        raise KafkaUnavailable(f"could not read {topic}/{partition}/{offset} in {timeout_s:.0f} s")
    finally:
        consumer.close()


def replayable(letter: DeadLetter, max_replays: int) -> tuple[list[RawEvent], str | None]:
    """The readings of ``letter`` as they go back on the raw topic, or why there are none."""
    record = decode_raw_record(
        letter.original,
        record_id=f"{letter.source_topic}/{letter.partition}/{letter.offset}",
        record_time=letter.failed_at,
        format_header=None,
    )
    events = list(record.events)
    if not events:
        events = _from_curated(letter.original)
    if not events:
        return [], "the original holds no reading (undecodable)"
    if any(event.replay_count >= max_replays for event in events):
        return [], f"already replayed {max_replays} time(s)"
    return [msgspec.structs.replace(e, replayed=e.replay_count + 1) for e in events], None


def _from_curated(original: bytes) -> list[RawEvent]:
    """A sink's dead letter holds a curated reading: rebuild the reading a device sent."""
    try:
        curated = curated_decoder.decode(original)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return []
    payload: dict[str, Any] = {
        "device_id": curated.device_id,
        "timestamp": curated.ts,
        "event_id": curated.event_id,
        "sensors": curated.sensors,
    }
    if curated.metadata is not None:
        payload["metadata"] = curated.metadata
    return [
        RawEvent(
            event_id=curated.event_id,
            device_id=curated.device_id,
            received_at=curated.received_at,
            source=curated.source,
            payload=msgspec.Raw(msgspec.json.encode(payload)),
            replayed=curated.replayed,
        )
    ]


def produce_replays(
    bootstrap_servers: str,
    topic: str,
    events: list[RawEvent],
    *,
    envelope_max_items: int,
    envelope_max_bytes: int,
) -> int:
    """Put ``events`` on the raw ``topic`` as envelopes on their partitions; return the records."""
    producer = Producer(
        {
            **client_config(bootstrap_servers),
            "acks": "all",
            "enable.idempotence": True,
            "message.max.bytes": envelope_max_bytes * 2,
        }
    )
    metadata = producer.list_topics(topic, timeout=10)
    if topic not in metadata.topics:
        raise KafkaUnavailable(f"topic {topic} is not there")
    partitions = len(metadata.topics[topic].partitions)
    by_partition: dict[int, list[bytes]] = defaultdict(list)
    for event in events:
        by_partition[partition_for(event.device_id, partitions)].append(encode_item(event))
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(str(error))

    records = 0
    for partition, items in by_partition.items():
        for start in range(0, len(items), envelope_max_items):
            chunk = items[start : start + envelope_max_items]
            producer.produce(
                topic,
                build_raw_envelope(chunk),
                partition=partition,
                headers=[(FORMAT_HEADER, RAW_FORMAT.encode())],
                on_delivery=delivered,
            )
            records += 1
    if producer.flush(30) or failures:
        raise KafkaUnavailable(f"replay not acked by the broker: {failures or 'timed out'}")
    return records
