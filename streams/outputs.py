"""An agent's outputs for one batch, and publishing them: send all, wait for every ack.

An agent acks its input events only after :func:`publish` returned, so an offset is never
committed for an event whose outputs are not in Kafka (docs/decisions.md, decision 1).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from connectors.kafka.producer import Record
from schemas.errors import FleetError
from streams.retry import retry_until_done


class RecordProducer(Protocol):
    """What publishing needs of a producer (``connectors.kafka.producer.EventProducer``)."""

    async def produce_all(self, topic: str, records: Sequence[Record]) -> None: ...


@dataclass
class Outputs:
    """Records to produce, per topic, in order."""

    by_topic: dict[str, list[Record]] = field(default_factory=dict)

    def add(self, topic: str, record: Record) -> None:
        self.by_topic.setdefault(topic, []).append(record)

    def extend(self, topic: str, records: Sequence[Record]) -> None:
        if records:
            self.by_topic.setdefault(topic, []).extend(records)

    def records(self, topic: str) -> list[Record]:
        return self.by_topic.get(topic, [])


def is_retriable(exc: BaseException) -> bool:
    """Outages (broker away, queue full) are retried; anything else stops the worker."""
    return isinstance(exc, FleetError) and exc.retriable


async def publish(producer: RecordProducer, outputs: Outputs, *, backoff_max_s: float) -> None:
    """Produce every record and wait for every ack, retrying the whole batch until it lands.

    A retry may send some records twice; every record carries its event_id, and consumers (our
    sinks included) drop duplicates on it.
    """
    if not any(outputs.by_topic.values()):
        return

    async def send_all() -> None:
        sends = [
            producer.produce_all(topic, records)
            for topic, records in outputs.by_topic.items()
            if records
        ]
        results = await asyncio.gather(*sends, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    total = sum(len(records) for records in outputs.by_topic.values())
    await retry_until_done(
        send_all,
        what=f"publishing {total} records",
        is_retriable=is_retriable,
        backoff_max_s=backoff_max_s,
    )
