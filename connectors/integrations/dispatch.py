"""Making the outbound calls of one batch: bounded in concurrency and in time, never stalling.

Each call gets its node's attempts (``1 + retries``), each bounded by the node's ``timeout_s``,
with exponential backoff from ``backoff_s`` between them; a permanent failure (a 4xx, a refused
publish, a topic that does not exist) is not retried. What still failed is returned with its
reason, and the caller dead-letters it: a receiver that is down costs a batch at most
``(1 + retries) * timeout_s`` plus the backoff, and the partition moves on.

Kafka calls go through the worker's producer and wait for ``acks=all``; records may only go to
topics that exist and that the egress rule allows (``connectors.egress.kafka_target_refusal``:
never the pipeline's own topics, a table changelog or an internal topic).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from connectors.integrations.errors import CallFailed
from connectors.kafka.errors import KafkaUnavailable, ProducerBackpressure
from connectors.kafka.producer import Record
from schemas.errors import FleetError
from schemas.flows import Outbound

log = logging.getLogger(__name__)


class Sender(Protocol):
    async def send(self, call: Outbound) -> None: ...


class KafkaOutput(Protocol):
    async def produce_all(self, topic: str, records: Sequence[Record]) -> None: ...
    async def partition_count(self, topic: str, timeout_s: float = 10.0) -> int: ...


@dataclass
class KafkaSender:
    """Kafka nodes: one record per call, ``acks=all``; refused and missing topics fail."""

    producer: Callable[[], Awaitable[KafkaOutput]]
    refusal: Callable[[str], str | None]
    """Why a topic may not be written to, or None."""
    timeout_s: float = 8.0
    _known: set[str] = field(default_factory=set)

    async def send(self, call: Outbound) -> None:
        topic = call.target
        why = self.refusal(topic)
        if why is not None:
            raise CallFailed(why, retriable=False)
        producer = await self.producer()
        if topic not in self._known:
            try:
                await producer.partition_count(topic, self.timeout_s)
            except KafkaUnavailable as exc:
                raise CallFailed(f"topic {topic}: {exc}", retriable=False) from exc
            self._known.add(topic)
        record = Record(call.key, call.body, headers=[("fleet-call-id", call.call_id)])
        try:
            await asyncio.wait_for(producer.produce_all(topic, [record]), self.timeout_s)
        except (KafkaUnavailable, ProducerBackpressure, TimeoutError) as exc:
            raise CallFailed(f"Kafka did not ack: {exc}", retriable=True) from exc
        except FleetError as exc:
            raise CallFailed(f"Kafka refused the record: {exc}", retriable=False) from exc


@dataclass(frozen=True)
class Failure:
    call: Outbound
    error: CallFailed
    attempts: int


class Dispatcher:
    """Runs calls with retries; at most ``concurrency`` attempts in flight (per worker)."""

    def __init__(
        self,
        senders: dict[str, Sender],
        concurrency: int,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._senders = senders
        self._slots = asyncio.Semaphore(concurrency)
        self._sleep = sleep

    async def run(self, calls: Sequence[Outbound]) -> list[Failure]:
        """Make every call; return the ones that failed for good, with the last error."""
        if not calls:
            return []
        results = await asyncio.gather(*(self._call(call) for call in calls))
        return [failure for failure in results if failure is not None]

    async def _call(self, call: Outbound) -> Failure | None:
        sender = self._senders.get(call.kind)
        if sender is None:
            return Failure(call, CallFailed(f"no {call.kind} integration", retriable=False), 0)
        attempts = 0
        delay = call.backoff_s
        while True:
            attempts += 1
            try:
                async with self._slots:
                    await asyncio.wait_for(sender.send(call), call.timeout_s + 1.0)
                return None
            except TimeoutError:
                error = CallFailed(f"timed out after {call.timeout_s}s", retriable=True)
            except CallFailed as exc:
                error = exc
            if not error.can_retry or attempts > call.retries:
                log.warning(
                    "flow %s node %s: %s call to %s failed after %d attempt(s): %s",
                    call.flow_id,
                    call.node_id,
                    call.kind,
                    call.target,
                    attempts,
                    error.reason,
                )
                return Failure(call, error, attempts)
            await self._sleep(delay)
            delay = min(delay * 2, 30.0)
