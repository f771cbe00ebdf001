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

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import msgspec

from agents.deadletters import dead_letter
from connectors.kafka.producer import Record
from schemas.clock import Clock
from streams.faust_compat import store_locally
from streams.outputs import Outputs

log = logging.getLogger(__name__)
T = TypeVar("T")


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
        store_locally(self.table, self.rows)

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class _RowMessage:
    """A table row, in the shape of a consumed record, for its dead letter."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int = -1
    offset: int = -1
    timestamp: float = 0.0
    headers: Any = None


@dataclass
class Quarantine:
    """Rows of one table that no longer decode (written by an older release, or holding a value
    no code path foresaw): each becomes a dead letter (stage ``<table>.state``, the row's bytes as
    its original) and the device starts afresh, instead of the worker stopping on every
    redelivery of the batch. The letters go out with the agent's next outputs (:meth:`take`)."""

    table: Any
    """The Faust table (its name and changelog topic name the letters)."""
    clock: Clock
    letters: list[Record] = field(default_factory=list)

    def decode(self, key: bytes, value: bytes | None, decoder: Callable[[bytes], T]) -> T | None:
        """The decoded row, or None when there is none or it was quarantined."""
        if value is None:
            return None
        try:
            return decoder(value)
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            self.quarantine(key, value, exc)
            return None

    def quarantine(self, key: bytes, value: bytes, exc: Exception) -> None:
        """Dead-letter a stored row found not to decode (its caller resets it)."""
        self.letters.append(self._letter(key, value, exc, self.clock()))
        log.warning(
            "%s: row of %r does not decode (%s): dead-lettered and reset", self.table, key, exc
        )

    def take(self) -> list[Record]:
        letters, self.letters = self.letters, []
        return letters

    def _letter(self, key: bytes, value: bytes, error: Exception, now: datetime) -> Record:
        topic = self.table.changelog_topic.get_topic_name()
        return dead_letter(f"{self.table.name}.state", _RowMessage(topic, key, value), error, now)
