"""Table rows written the fast way: changelog records through our producer, then the store.

A Faust table write (``table[key] = value``) queues a changelog record in Faust's producer
buffer, which aiokafka then produces record by record in Python: ~50 µs a write, and the
status and rollup tables write one row per device and batch (decision 26). Here the rows of a
batch go to the table's changelog topic through the worker's librdkafka producer, as one
produce call awaited for the broker's acks, and only then into the local store
(``streams.faust_compat.store_locally``). They are the records and partitions Faust would write
(the key's partition, which is that of the event the row belongs to), so Faust recovers the
table from them.

Order and crashes: the agents publish their outputs (transitions, rollup records) first, then
these rows, then ack the batch. A crash before the rows are acked replays the batch against the
previous state; after, the replay finds the new positions in the recovered state and skips it.

What Faust does not learn: the offset of each changelog record, which it keeps (RocksDB store)
to resume recovery where the local store left off. Without it, a restarted worker reads the
compacted changelog of its partitions from the start: one record per device.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from connectors.kafka.producer import Record
from streams.faust_compat import store_locally
from streams.outputs import Outputs


@dataclass
class TableRows:
    """Rows of one table for one batch, written by :meth:`write`."""

    table: Any
    rows: list[tuple[Any, bytes, bytes | None]] = field(default_factory=list)

    def add(self, event: Any, key: bytes, value: bytes | None) -> None:
        """``key`` → ``value`` in the partition of ``event`` (a Faust event, or a stand-in
        with ``message.partition``); None deletes the row (a changelog tombstone)."""
        self.rows.append((event, key, value))

    async def write(self, publish: Callable[[Outputs], Awaitable[None]]) -> None:
        """The changelog records through ``publish`` (``WorkerContext.publish``: returns once
        the broker acked them all), then the local store: never the store first."""
        await publish(self.outputs())
        self.store()

    def outputs(self) -> Outputs:
        """The changelog records, for ``WorkerContext.publish``."""
        outputs = Outputs()
        topic = self.table.changelog_topic.get_topic_name()
        outputs.extend(
            topic, [Record(key, value, event.message.partition) for event, key, value in self.rows]
        )
        return outputs

    def store(self) -> None:
        """Into the local store, once the changelog records are acked."""
        for event, key, value in self.rows:
            store_locally(self.table, event, key, value)

    def __len__(self) -> int:
        return len(self.rows)
