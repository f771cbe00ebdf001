"""Read fixed offset ranges of a topic to their end, however many records they hold.

Tools (dead-letter list and replay, a device's status history) read "everything that is there
now": the end offsets are fixed first, then records are consumed in large batches until every
partition's position reaches its end. The only time limit is on *progress*: the read fails when
no record arrives for ``stall_s`` while some partition is not at its end (the broker is away),
never because there were many records. Blocking (confluent-kafka): async callers use a thread.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.security import client_config

BATCH = 1000
"""Records per ``consume`` call."""


def tool_consumer(bootstrap_servers: str, purpose: str) -> Consumer:
    """A consumer that is assigned partitions and never joins a group or commits."""
    return Consumer(
        {
            **client_config(bootstrap_servers),
            "group.id": f"fleetstream-{purpose}-{uuid.uuid4()}",  # librdkafka wants one anyway
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",  # a start below the retained log: its first record
        }
    )


def partition_ends(consumer: Consumer, topic: str, timeout_s: float = 10.0) -> dict[int, int]:
    """The end offset of each partition of ``topic``; KafkaUnavailable when it is not there."""
    metadata = consumer.list_topics(topic, timeout=timeout_s)
    found = metadata.topics.get(topic)
    if found is None or found.error is not None:
        raise KafkaUnavailable(f"topic {topic} is not there (run `fleetstream topics create`)")
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)[1]
        for p in found.partitions
    }


def read_range(
    consumer: Consumer,
    topic: str,
    starts: Mapping[int, int],
    ends: Mapping[int, int],
    *,
    stall_s: float = 30.0,
) -> Iterator[Message]:
    """Every record of ``topic`` from ``starts`` (partition → offset) up to ``ends`` (exclusive).

    Raises KafkaUnavailable when no progress is made for ``stall_s``."""
    pending = {p for p, end in ends.items() if end > starts.get(p, 0)}
    if not pending:
        return
    consumer.assign([TopicPartition(topic, p, starts.get(p, 0)) for p in pending])
    deadline = time.monotonic() + stall_s
    while pending:
        messages = consumer.consume(BATCH, timeout=min(1.0, stall_s))
        progressed = False
        for message in messages:
            partition = message.partition() or 0
            if message.error() is not None:  # end of partition, or a transient error
                progressed |= _at_end(consumer, topic, partition, ends, pending)
                continue
            offset = message.offset() or 0
            if offset >= ends[partition]:
                pending.discard(partition)
                continue
            progressed = True
            if offset + 1 >= ends[partition]:
                pending.discard(partition)
            yield message
        if progressed:
            deadline = time.monotonic() + stall_s
        elif time.monotonic() > deadline:
            raise KafkaUnavailable(
                f"reading {topic}: no progress in {stall_s:.0f} s "
                f"with partitions {sorted(pending)} not read to their end"
            )


def _at_end(
    consumer: Consumer, topic: str, partition: int, ends: Mapping[int, int], pending: set[int]
) -> bool:
    """Drop ``partition`` from ``pending`` once its position passed its end (a compacted or
    transactional tail holds offsets without records)."""
    [position] = consumer.position([TopicPartition(topic, partition)])
    if partition in pending and position.offset >= ends[partition]:
        pending.discard(partition)
        return True
    return False


def read_following(
    consumer: Consumer, topic: str, starts: Mapping[int, int], poll_s: float = 0.5
) -> Iterator[Message]:
    """Every record of ``topic`` from ``starts`` on, waiting for new ones without end: the
    caller stops (a count, Ctrl-C). Errors other than end-of-partition raise KafkaUnavailable."""
    consumer.assign([TopicPartition(topic, p, offset) for p, offset in starts.items()])
    while True:
        for message in consumer.consume(BATCH, timeout=poll_s):
            error = message.error()
            if error is None:
                yield message
            elif error.code() != KafkaError._PARTITION_EOF:
                raise KafkaUnavailable(f"reading {topic}: {error.str()}")
