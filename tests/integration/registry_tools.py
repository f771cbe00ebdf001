"""Reading the device registry topic as records (tombstones included) in tests."""

from __future__ import annotations

import time
import uuid

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

RegistryRecords = list[tuple[str, bytes | None]]


def registry_records(bootstrap: str, topic: str, partitions: int) -> RegistryRecords:
    """Every record now on ``topic`` as ``(device_id, value)``, up to the high watermarks."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"test-registry-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }
        pending = {p for p, high in ends.items() if high > 0}
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in pending])
        records: RegistryRecords = []
        # Bounded in time, not in polls: a resync publishes every device of the (shared) test
        # database, so the topic can hold thousands of records.
        deadline = time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            for message in consumer.consume(500, 0.2):
                if message.error() is not None:
                    continue
                key = message.key()
                records.append(((key or b"").decode(), message.value()))
                if (message.offset() or 0) + 1 >= ends[message.partition() or 0]:
                    pending.discard(message.partition() or 0)
        assert not pending, f"could not read {topic} to its end"
        return records
    finally:
        consumer.close()


def latest(records: RegistryRecords, device_id: str) -> tuple[bool, bytes | None]:
    """``(seen, last value)`` of ``device_id``; ``(True, None)`` is a tombstone."""
    values = [value for key, value in records if key == device_id]
    return (bool(values), values[-1] if values else None)
