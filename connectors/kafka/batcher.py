"""Group commit at the edge: readings of concurrent requests share partition-aligned envelopes.

Every edge (HTTP, MQTT) hands its validated readings to one :class:`EnvelopeBatcher`. Readings
wait here for at most ``linger_s`` (or until an envelope is full), grouped by the partition
Kafka's default partitioner gives their device_id; then each group is produced as one envelope
to that partition, and every caller whose readings it holds is released once the broker acked
it with ``acks=all``. A caller is answered only when *all* envelopes holding its readings were
acked; if any failed, it gets that error (and answers 429/503), never a success.

A failed envelope may hold readings of callers that retry: the retry produces them again under
the same event ids, and the sinks drop the repeats.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from connectors.kafka.partitioner import partition_for
from connectors.kafka.producer import Record
from schemas.envelopes import FORMAT_HEADER, RAW_FORMAT, raw_envelope
from schemas.settings import KafkaSettings

_OVERHEAD = len(raw_envelope([]))
_HEADERS: list[tuple[str, str | bytes | None]] = [(FORMAT_HEADER, RAW_FORMAT.encode())]


class RecordProducer(Protocol):
    """What the batcher needs of a producer (``EventProducer``)."""

    async def produce_all(self, topic: str, records: Sequence[Record]) -> None: ...

    async def partition_count(self, topic: str) -> int: ...


@dataclass
class _OpenEnvelope:
    partition: int
    done: asyncio.Future[None]
    items: list[bytes] = field(default_factory=list)
    size: int = _OVERHEAD


@dataclass(frozen=True)
class BatcherLimits:
    linger_s: float = 0.005
    max_items: int = 1000
    max_bytes: int = 512 * 1024

    @classmethod
    def of(cls, kafka: KafkaSettings) -> BatcherLimits:
        """The limits every edge uses (HTTP and MQTT group readings alike)."""
        return cls(
            linger_s=kafka.envelope_linger_ms / 1000,
            max_items=kafka.envelope_max_items,
            max_bytes=kafka.envelope_max_bytes,
        )


class EnvelopeBatcher:
    """Collects encoded readings per partition and produces them as envelopes."""

    def __init__(
        self, producer: RecordProducer, topic: str, partitions: int | None, limits: BatcherLimits
    ) -> None:
        """``partitions`` None: ask the broker on first use (the edge starts while it is away)."""
        self._producer = producer
        self._topic = topic
        self._partitions = partitions
        self._limits = limits
        self._open: dict[int, _OpenEnvelope] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._sending: set[asyncio.Task[None]] = set()

    async def submit(self, items: Sequence[tuple[str, bytes]]) -> None:
        """Produce ``(device_id, encoded item)`` pairs; return once all of them are acked."""
        if self._partitions is None:
            self._partitions = await self._producer.partition_count(self._topic)
        waits = self._place(items, self._partitions)
        if len(waits) == 1:  # one envelope (an MQTT message, a small request): no wait() set-up
            # shielded: a cancelled submitter must not cancel the envelope others wait for
            await asyncio.shield(next(iter(waits)))
            return
        await _all_of(waits)

    def add(self, items: Sequence[tuple[str, bytes]]) -> asyncio.Future[None]:
        """Like :meth:`submit` without a task per call: the pairs are placed now, and the
        future is done once all of them are acked (often an envelope's own future, shared with
        every caller whose readings it holds: wait on it with ``asyncio.wait`` or ``shield``,
        never cancel it)."""
        if self._partitions is None:  # the broker not asked yet: the slow way, once
            return asyncio.ensure_future(self.submit(items))
        waits = self._place(items, self._partitions)
        if len(waits) == 1:
            return next(iter(waits))
        return asyncio.ensure_future(_all_of(waits))

    def _place(
        self, items: Sequence[tuple[str, bytes]], partitions: int
    ) -> set[asyncio.Future[None]]:
        waits: set[asyncio.Future[None]] = set()
        for device_id, item in items:
            envelope = self._envelope_for(partition_for(device_id, partitions), len(item))
            envelope.items.append(item)
            envelope.size += len(item) + 1
            waits.add(envelope.done)
        self._schedule_flush()
        return waits

    async def drain(self) -> None:
        """Send what is waiting and wait for it (on shutdown)."""
        self._flush()
        while self._sending:
            await asyncio.wait(set(self._sending))

    def _envelope_for(self, partition: int, item_size: int) -> _OpenEnvelope:
        envelope = self._open.get(partition)
        limits = self._limits
        if envelope is not None and (
            len(envelope.items) >= limits.max_items or envelope.size + item_size > limits.max_bytes
        ):
            self._send([self._open.pop(partition)])
            envelope = None
        if envelope is None:
            done = asyncio.get_running_loop().create_future()
            envelope = self._open[partition] = _OpenEnvelope(partition, done)
        return envelope

    def _schedule_flush(self) -> None:
        if self._timer is None and self._open:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self._limits.linger_s, self._flush)

    def _flush(self) -> None:
        self._timer = None
        if self._open:
            envelopes = list(self._open.values())
            self._open.clear()
            self._send(envelopes)

    def _send(self, envelopes: list[_OpenEnvelope]) -> None:
        task = asyncio.get_running_loop().create_task(self._produce(envelopes))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _produce(self, envelopes: list[_OpenEnvelope]) -> None:
        records = [
            Record(None, raw_envelope(envelope.items), envelope.partition, _HEADERS)
            for envelope in envelopes
        ]
        try:
            await self._producer.produce_all(self._topic, records)
        except Exception as exc:  # noqa: BLE001 - handed to every waiting caller
            for envelope in envelopes:
                envelope.done.set_exception(exc)
        else:
            for envelope in envelopes:
                envelope.done.set_result(None)


async def _all_of(waits: set[asyncio.Future[None]]) -> None:
    await asyncio.wait(waits)
    failures = [done.exception() for done in waits]  # each retrieved (no "never retrieved")
    for failure in failures:
        if failure is not None:
            raise failure
