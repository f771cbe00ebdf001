"""Kafka helpers of the harness: fast preloading (not timed) and watermark counts."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from bench.data import Envelope
from connectors.kafka.partitioner import partition_for
from connectors.kafka.security import client_config
from schemas.envelopes import FORMAT_HEADER, RAW_FORMAT, raw_envelope

Progress = Callable[[str], None]
_HEADERS = [(FORMAT_HEADER, RAW_FORMAT.encode())]


def fast_producer(bootstrap: str) -> Producer:
    """An idempotent acks=all producer tuned for bulk loading (as the edge's, lz4)."""
    config: dict[str, Any] = {
        **client_config(bootstrap),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "compression.type": "lz4",
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
        "message.max.bytes": 4 * 1024 * 1024,
    }
    return Producer(config)


class _Delivery:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))


def _produce(producer: Producer, delivery: _Delivery, **record: Any) -> None:
    while True:
        try:
            producer.produce(on_delivery=delivery, **record)
            return
        except BufferError:
            producer.poll(0.05)


def _finish(producer: Producer, delivery: _Delivery) -> None:
    remaining = producer.flush(120)
    if remaining or delivery.failed:
        first = delivery.failed[0] if delivery.failed else "timeout"
        raise RuntimeError(f"preload failed: {remaining} undelivered, first error: {first}")


def produce_envelopes(
    bootstrap: str, topic: str, envelopes: Iterable[Envelope], progress: Progress
) -> tuple[int, int]:
    """Produce each envelope to its partition; return (records, readings). Waits for acks."""
    producer, delivery = fast_producer(bootstrap), _Delivery()
    records = readings = 0
    for envelope in envelopes:
        _produce(
            producer,
            delivery,
            topic=topic,
            value=raw_envelope(envelope.items),
            partition=envelope.partition,
            headers=_HEADERS,
        )
        records += 1
        readings += len(envelope.items)
        if records % 2000 == 0:
            producer.poll(0)
            progress(f"  preloaded {readings:,} readings in {records:,} envelopes")
    _finish(producer, delivery)
    return records, readings


def produce_per_message(
    bootstrap: str,
    topic: str,
    items: Iterable[tuple[str, bytes]],
    partitions: int,
    progress: Progress,
) -> int:
    """One record per reading, keyed by device_id on its murmur2 partition; return the count."""
    producer, delivery = fast_producer(bootstrap), _Delivery()
    count = 0
    for device_id, value in items:
        key = device_id.encode()
        _produce(
            producer,
            delivery,
            topic=topic,
            key=key,
            value=value,
            partition=partition_for(device_id, partitions),
        )
        count += 1
        if count % 100_000 == 0:
            producer.poll(0)
            progress(f"  preloaded {count:,} single-reading records")
    _finish(producer, delivery)
    return count


class Watermarks:
    """Counts records on fresh topics from their high watermarks (cheap: no consuming)."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = Consumer(
            client_config(bootstrap, **{"group.id": "fleet-bench-watermarks"})
        )
        self._partitions: dict[str, list[int]] = {}

    def count(self, topic: str) -> int:
        """Records written to ``topic`` so far (sum of high watermarks; 0 if it is missing)."""
        if topic not in self._partitions:
            metadata = self._consumer.list_topics(topic, timeout=10)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                return 0
            self._partitions[topic] = sorted(found.partitions)
        total = 0
        for partition in self._partitions[topic]:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=10, cached=False
            )
            total += max(high, 0)
        return total

    def close(self) -> None:
        self._consumer.close()
