"""The ``flows`` agent: user-defined flows and alert rules on every curated reading.

Takes batches of ``fleet.curated.v1`` (``FLEET_FLOWS__BATCH_MAX`` envelopes), runs the matching
flows over the whole batch (:mod:`agents.flows_runner`), then, in this order:

1. makes the batch's outbound calls (HTTP, MQTT, Kafka) concurrently, bounded by
   ``FLEET_FLOWS__OUTBOUND_CONCURRENCY`` and each by its node's timeout and retries; a call that
   still fails becomes a dead letter (stage ``flow.<id>``): a receiver that is down never
   stalls the partition;
2. publishes alert transitions (``fleet.alerts.v1``) and dead letters, and waits for the acks;
3. writes each device's flow state (alert rules, raw positions) to the ``flow-state`` table,
   one write per device per batch;
4. acks the batch.

A crash before 3 replays the batch: outbound calls may be repeated (each carries a stable
``call_id`` / ``Idempotency-Key``) and an alert transition is published again with the same
``alert_id`` (consumers keep one per id and state). A crash after 3 finds the positions in the
recovered state, so nothing is repeated.

Flows come from ``fleet.flows.v1`` (:class:`~connectors.kafka.flow_cache.FlowCache`); the agent
starts once that topic was read to its end and recompiles its flow set whenever the topic
changes, so a new flow version applies from the next batch, without a restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from agents.deadletters import dead_letter
from agents.flows_metrics import FlowMetrics
from agents.flows_runner import FlowRunner, location_timezone
from connectors.egress import EgressPolicy, guarded_client, kafka_target_refusal
from connectors.integrations.dispatch import Dispatcher, Failure, KafkaSender
from connectors.integrations.http import HttpSender
from connectors.integrations.mqtt import MqttSender
from connectors.kafka.flow_cache import FlowCache
from streams import tables
from streams.context import WorkerContext, guarded
from streams.faust_compat import writing_as
from streams.flow_engine import alerts
from streams.flow_engine.catalog import FlowSet
from streams.flow_engine.engine import CompiledFlow
from streams.flow_engine.expressions import CompileError

log = logging.getLogger(__name__)

TABLE = tables.FLOW_STATE


class CompiledFlows:
    """The flow set of the registry's current generation; recompiles only what changed."""

    def __init__(self, cache: FlowCache) -> None:
        self._cache = cache
        self._generation = -1
        self._compiled: dict[tuple[str, int], CompiledFlow] = {}
        self.current = FlowSet()

    def refresh(self) -> FlowSet:
        generation = self._cache.generation
        if generation == self._generation:
            return self.current
        compiled: dict[tuple[str, int], CompiledFlow] = {}
        for document in self._cache.documents().values():
            if not document.enabled:
                continue
            key = (document.flow_id, document.version)
            flow = self._compiled.get(key)
            if flow is None:
                try:
                    flow = CompiledFlow(document)
                except CompileError as exc:
                    # Stored flows compiled when they were stored, but one stored before a
                    # limit was tightened (streams.flow_engine.cost) may not any more.
                    log.error("flow %s v%d does not compile: %s", *key, exc)
                    continue
            compiled[key] = flow
        self._compiled = compiled
        self._generation = generation
        self.current = FlowSet.of(compiled.values())
        versions = ", ".join(f"{flow_id} v{version}" for flow_id, version in sorted(compiled))
        log.info("flows in force: %s", versions or "none")
        return self.current


class FlowsAgent:
    def __init__(self, ctx: WorkerContext, clock: Callable[[], datetime]) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.settings = settings
        self.clock = clock
        self.table = ctx.app.Table(
            TABLE,
            # bytes in and out: Faust derives the changelog's serializers from these types
            # ("raw"); a schema alone would leave them at "json" and break recovery.
            key_type=bytes,
            value_type=bytes,
            partitions=settings.kafka.partitions,
            store="rocksdb://" if settings.stream.table_store == "rocksdb" else "memory://",
            help="flows: alert rule state and applied raw positions per device",
        )
        self.cache = FlowCache(settings.kafka.bootstrap_servers, settings.topics.flows)
        self.flows = CompiledFlows(self.cache)
        self.ready = False
        self.metrics = FlowMetrics()
        self.runner = FlowRunner(
            settings.topics.alerts, settings.topics.deadletter, self._timezone_of
        )
        client = guarded_client(
            EgressPolicy.from_settings(settings),
            max_connections=settings.flows.outbound_concurrency,
        )
        self.http = HttpSender(client)
        self.mqtt = MqttSender(settings.mqtt)
        kafka = KafkaSender(ctx.producer, lambda topic: kafka_target_refusal(topic, settings))
        self.dispatcher = Dispatcher(
            {"http": self.http, "mqtt": self.mqtt, "kafka": kafka},
            settings.flows.outbound_concurrency,
        )

    def _timezone_of(self, device_id: str, location: Any) -> str:
        device = self.ctx.device_cache().get(device_id)
        if device is not None:
            zone = device.metadata.get("timezone") if isinstance(device.metadata, dict) else None
            if isinstance(zone, str) and zone:
                return zone
        return location_timezone(device_id, location)

    def state_of(self, device_id: str) -> alerts.DeviceFlowState | None:
        value = self.table.get(device_id.encode())
        return None if value is None else alerts.decode_state(value)

    async def start(self) -> None:
        self.cache.start()
        while not await self.cache.wait_caught_up(10.0):
            log.warning("flows agent waiting to read %s to its end", self.settings.topics.flows)
        devices = self.ctx.device_cache()
        while not await devices.wait_caught_up(10.0):
            log.warning("flows agent waiting for the device registry")
        self.flows.refresh()
        self.ready = True

    async def stop(self) -> None:
        await self.cache.stop()
        await self.http.close()
        await self.mqtt.close()

    async def on_batch(self, stream: Any, events: list[Any]) -> None:
        now = self.clock()
        flowset = self.flows.refresh()
        messages = [event.message for event in events]
        batch = self.runner.run_batch(messages, flowset, self.state_of, now)
        failures = await self.dispatcher.run([call for call, _ in batch.calls])
        origin = {id(call): message for call, message in batch.calls}
        for failure in failures:
            batch.outputs.add(
                self.settings.topics.deadletter,
                _call_letter(failure, origin[id(failure.call)], now),
            )
        self.metrics.record(batch.stats, failures, len(batch.calls), len(batch.alerts))
        await self.ctx.publish(batch.outputs)
        for device_id, (index, state) in batch.states.items():
            with writing_as(events[index]):
                self.table[device_id.encode()] = alerts.encode_state(state)
        for event in events:
            await stream.ack(event)


def _call_letter(failure: Failure, message: Any, now: datetime) -> Any:
    call = failure.call
    original = msgspec.json.encode(
        {**call.describe(), "attempts": failure.attempts, "error": failure.error.reason}
    )
    return dead_letter(
        f"flow.{call.flow_id}",
        message,
        failure.error,
        now,
        original=original,
        key=call.device_id,
        event_id=call.event_id,
    )


def register(ctx: WorkerContext, clock: Callable[[], datetime] | None = None) -> None:
    agent = FlowsAgent(ctx, clock or (lambda: datetime.now(UTC)))
    settings = ctx.settings

    async def flows(stream: Any) -> None:
        await agent.start()
        try:
            batches = stream.noack_take(settings.flows.batch_max, settings.worker.batch_within_s)
            async for events in batches:
                await agent.on_batch(stream, list(events))
        finally:
            await asyncio.shield(agent.stop())

    ctx.app.agent(ctx.topics.curated, name="flows")(guarded("flows", flows, ctx.crashes))

    async def refresh_flows() -> None:
        """Swap in changed flows between batches too (and log them), not only on the next one."""
        if agent.ready:
            agent.flows.refresh()

    ctx.app.timer(1.0, name="flows-refresh")(refresh_flows)

    _web_views(ctx, agent)


def _web_views(ctx: WorkerContext, agent: FlowsAgent) -> None:
    app = ctx.app

    @app.page("/flows/")
    async def flows_view(web: Any, request: Any) -> Any:
        """The flows in force on this worker, with their counters."""
        return web.json(agent.metrics.summary(agent.flows.current))

    @app.page("/flows/metrics/")
    async def flows_metrics(web: Any, request: Any) -> Any:
        """Prometheus exposition of the per-flow counters."""
        body, content_type = agent.metrics.exposition()
        return web.bytes(body, content_type=content_type)
