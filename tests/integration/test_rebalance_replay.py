"""Records fetched and then dropped before the group committed anything are read again.

Faust drops the records it fetched but did not hand to an agent when a rebalance starts or
ends, and seeks back to the committed offsets (``streams.faust_compat``). On a partition
without a committed offset that seek must go to the partition's start, or those records are
never read (the three-broker test lost a raw partition's first reading so). A real broker, a
fresh topic and group, aiokafka as Faust drives it.
"""

from __future__ import annotations

import uuid

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from connectors.kafka.admin import TopicSpec, ensure_topics
from schemas.settings import Settings
from streams.faust_compat import seek_to_committed_or_start
from tests.integration.kafka_tools import produce

RECORDS = 50


async def _fetch(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Up to ``count`` records, polling for at most ~30 s."""
    fetched: list[ConsumerRecord[bytes, bytes]] = []
    for _ in range(30):
        batches = await consumer.getmany(timeout_ms=1000, max_records=count - len(fetched))
        fetched.extend(record for batch in batches.values() for record in batch)
        if len(fetched) >= count:
            break
    return fetched


async def test_records_dropped_before_any_commit_are_read_again_from_the_start(
    stack_settings: Settings,
) -> None:
    bootstrap = stack_settings.kafka.bootstrap_servers
    topic = f"replay.{uuid.uuid4().hex[:10]}"
    ensure_topics(bootstrap, [TopicSpec(topic, 1)])
    produce(bootstrap, topic, [(None, f"reading {n}".encode()) for n in range(RECORDS)])
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"replay-{uuid.uuid4().hex[:10]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        dropped = await _fetch(consumer, RECORDS // 2)  # fetched, never handled or committed
        assert [record.offset for record in dropped] == list(range(RECORDS // 2))

        committed = await seek_to_committed_or_start(consumer)

        assert committed == {TopicPartition(topic, 0): None}
        again = await _fetch(consumer, RECORDS)
        assert [record.offset for record in again] == list(range(RECORDS))
    finally:
        await consumer.stop()
