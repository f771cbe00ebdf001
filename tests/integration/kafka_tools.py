"""Small confluent-kafka helpers for tests: produce raw bytes, read a whole topic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from confluent_kafka import Consumer, Producer, TopicPartition

from schemas.envelopes import decode_raw_record
from schemas.events import RawEvent


def produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for key, value in records:
        producer.produce(topic, value, key)
    remaining = producer.flush(15)
    assert remaining == 0, f"{remaining} test records were not delivered"


def end_offsets(bootstrap: str, topic: str, partitions: int) -> int:
    """The number of records ever written to ``topic`` (sum of high watermarks)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    try:
        total = 0
        for partition in range(partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            total += high
        return total
    finally:
        consumer.close()


def read_all(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> list[bytes]:
    """Read ``topic`` from the beginning until ``expected`` values arrived (or time runs out)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-reader-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    try:
        remaining_polls = int(timeout_s / 0.5)
        while len(values) < expected and remaining_polls > 0:
            message = consumer.poll(0.5)
            remaining_polls -= 1
            if message is None or message.error() is not None:
                continue
            value = message.value()
            if value is not None:
                values.append(value)
        return values
    finally:
        consumer.close()


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 30.0) -> list[bytes]:
    """Every value of ``topic`` up to the high watermarks seen when called."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()
    return read_all(bootstrap, topic, sum(ends.values()), timeout_s)


def raw_events(value: bytes) -> list[RawEvent]:
    """The readings a ``fleet.raw.v1`` record holds (fails the test on a bad item)."""
    record = decode_raw_record(
        value, record_id="test", record_time=datetime.now(UTC), format_header=None
    )
    assert not record.failures, record.failures
    return list(record.events)


def partition_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """High watermark per partition of ``topic``."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4()}"})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        return {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
    finally:
        consumer.close()


def committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The offsets ``group`` committed on each partition of ``topic`` (0 where none yet).

    Reading them does not join the group, so it never disturbs the workers.
    """
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        offsets = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in offsets}
    finally:
        consumer.close()
