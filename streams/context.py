"""What every agent gets: the app, the settings, topic handles, the output producer, a guard.

Agents publish through one confluent-kafka producer per worker (``connectors.kafka.producer``):
librdkafka produces a record in ~1-2 µs, where Faust's ``Topic.send`` spends ~250 µs and its
aiokafka producer tens of µs in Python. Faust's own producer still writes table changelogs and
commits offsets.

The guard is the worker's last line of defence for the delivery rule: no offset is committed
for an event whose outputs are not in Kafka (docs/decisions.md, decision 1). Per-reading
failures are dead letters and outages are retried inside the agents, so an exception that still
escapes an agent is a bug or a permanent fault. Faust would restart the agent, and the old
``noack_take`` would go on acking messages that nobody processes; so the guard logs the error
and ends the process at once, without a final commit. Whatever was not acked is redelivered to
the worker that takes the partitions over (a restarted one, or another in the group).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import faust

from connectors.kafka.device_cache import DeviceCache
from connectors.kafka.producer import EventProducer, ProducerConfig
from schemas.clock import Clock, utc_now
from schemas.settings import Settings
from streams.crashes import CrashLedger, in_hand
from streams.metrics import METRICS, metered
from streams.outputs import Outputs, publish
from streams.topics import SourceTopics

log = logging.getLogger(__name__)

EXIT_AGENT_CRASHED = 70
"""Exit status of a worker stopped by an escaped exception (EX_SOFTWARE)."""

AgentBody = Callable[[Any], Awaitable[None]]


def stop_worker(agent: str, exc: BaseException) -> None:
    """Log ``exc`` and end the process now: no shutdown hooks, so no offset commit."""
    log.critical(
        "agent %s failed with an error it cannot handle; stopping the worker without "
        "committing, so the unfinished batch is redelivered: %r",
        agent,
        exc,
        exc_info=exc,
    )
    logging.shutdown()
    sys.stderr.flush()
    os._exit(EXIT_AGENT_CRASHED)


def guarded(name: str, body: AgentBody, crashes: CrashLedger | None = None) -> AgentBody:
    """``body`` as an agent whose escaped exceptions stop the worker (see module docstring),
    after counting the events it held in the crash ledger (``streams.crashes``)."""

    @functools.wraps(body)
    async def agent(stream: Any) -> None:
        metered_stream = metered(name, stream)
        try:
            await body(metered_stream)
        except asyncio.CancelledError:  # the worker is stopping: a normal end
            raise
        except BaseException as exc:  # noqa: BLE001 - the point: nothing escapes silently
            if crashes is not None:
                crashes.record(name, in_hand(metered_stream.in_hand()), exc)
            stop_worker(name, exc)

    return agent


@dataclass
class WorkerContext:
    settings: Settings
    app: faust.App
    topics: SourceTopics
    clock: Clock = utc_now
    """"Now" for every agent: received and processed times, timers, dead letters."""
    crashes: CrashLedger | None = None
    """Records that were in hand when a worker crashed (loaded at start; None in tests)."""
    _producer: EventProducer | None = None
    _producer_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _device_cache: DeviceCache | None = None

    async def producer(self) -> EventProducer:
        """The worker's output producer, started on first use."""
        async with self._producer_lock:
            if self._producer is None:
                producer = EventProducer(output_producer_config(self.settings))
                await producer.start()
                self._producer = producer
            return self._producer

    def device_cache(self) -> DeviceCache:
        """The worker's copy of the device registry (``fleet.devices.v1``), started on first
        use; agents wait for ``wait_caught_up`` before trusting a miss."""
        if self._device_cache is None:
            self._device_cache = DeviceCache(
                self.settings.kafka.bootstrap_servers, self.settings.topics.devices
            )
            self._device_cache.start()
        return self._device_cache

    async def publish(self, outputs: Outputs) -> None:
        """Produce ``outputs`` and wait for every ack, retrying while the broker is away."""
        await publish(
            await self.producer(), outputs, backoff_max_s=self.settings.worker.retry_backoff_max_s
        )
        METRICS.published(outputs.by_topic)

    async def close(self) -> None:
        if self._device_cache is not None:
            await self._device_cache.stop()
            self._device_cache = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


def output_producer_config(settings: Settings) -> ProducerConfig:
    kafka = settings.kafka
    return ProducerConfig(
        bootstrap_servers=kafka.bootstrap_servers,
        client_id=f"{settings.worker.app_id}-outputs",
        # A send that cannot complete fails into the agents' capped retries (each logged),
        # instead of hanging: a stalled worker is visible within seconds.
        delivery_timeout_ms=int(kafka.producer_request_timeout_s * 1000),
        linger_ms=5,
        queue_max_messages=1_000_000,
        kafka=kafka,
    )
