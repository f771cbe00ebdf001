"""Publishing an agent's outputs: send all, then wait for the broker to ack every one.

An agent acks its input events only after :func:`publish` returned, so an offset is never
committed for an event whose outputs are not in Kafka.

Records go straight to the worker's Kafka producer (``app.producer``) rather than through
``Topic.send``: Faust's channel machinery costs ~0.25 ms per record, which made publishing
the validate agent's bottleneck (bench/RESULTS.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from agents.retry import retry_until_done


class Producer(Protocol):
    """The part of Faust's producer (``faust.types.ProducerT``) that agents use."""

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> Awaitable[Any]: ...


@dataclass(frozen=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes


async def publish(producer: Producer, outputs: Sequence[Output], *, backoff_max_s: float) -> None:
    """Send ``outputs`` in order and wait for every ack, retrying the batch until it lands.

    A retry may send some records twice; every record carries its event_id, and consumers (our
    sinks included) drop duplicates on it.
    """

    async def send_all() -> None:
        pending = [
            await producer.send(out.topic, out.key, out.value, None, None, None) for out in outputs
        ]
        await asyncio.gather(*pending)

    if outputs:
        await retry_until_done(
            send_all,
            what=f"publishing {len(outputs)} records",
            # The payloads are bytes we built; a failure here is the broker or the link.
            is_retriable=lambda exc: True,
            backoff_max_s=backoff_max_s,
        )
