"""Publishing an agent's outputs: send all, then wait for the broker to ack every one.

An agent acks its input events only after :func:`publish` returned, so an offset is never
committed for an event whose outputs are not in Kafka.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.retry import retry_until_done


@dataclass(frozen=True)
class Output:
    topic: Any
    """A Faust topic (``faust.TopicT``)."""
    key: bytes | None
    value: bytes


async def publish(outputs: Sequence[Output], *, backoff_max_s: float) -> None:
    """Send ``outputs`` in order and wait for every ack, retrying the batch until it lands.

    A retry may send some records twice; every record carries its event_id, and consumers (our
    sinks included) drop duplicates on it.
    """

    async def send_all() -> None:
        pending = [await out.topic.send(key=out.key, value=out.value) for out in outputs]
        await asyncio.gather(*pending)

    if outputs:
        await retry_until_done(
            send_all,
            what=f"publishing {len(outputs)} records",
            # The payloads are bytes we built; a failure here is the broker or the link.
            is_retriable=lambda exc: True,
            backoff_max_s=backoff_max_s,
        )
