"""The MQTT front's metrics: connections, refusals, publishes by outcome, PUBACK latency."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connectors.mqtt.front.ingest import SUCCESS, KafkaTrouble

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class FrontMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        self.connections = Gauge("fleet_mqtt_connections", "devices connected", registry=r)
        self.refusals = Counter(
            "fleet_mqtt_refusals", "connections refused or closed, by reason", ["reason"],
            registry=r,
        )  # fmt: skip
        self.publishes = Counter(
            "fleet_mqtt_publishes", "PUBLISH packets by outcome", ["outcome"], registry=r
        )
        self.puback_seconds = Histogram(
            "fleet_mqtt_puback_seconds", "from PUBLISH read to Kafka's ack (QoS 1)",
            buckets=_SECONDS, registry=r,
        )  # fmt: skip

    def connected(self, change: int) -> None:
        self.connections.inc(change)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def taken(self, done: asyncio.Future[int], started: float | None) -> None:
        if done.cancelled():
            outcome = "cancelled"
        elif isinstance(done.exception(), KafkaTrouble):
            outcome = "kafka-unavailable"
        elif done.exception() is not None:
            outcome = "error"
        else:
            outcome = "accepted" if done.result() == SUCCESS else f"refused:{done.result():#x}"
        self.publishes.labels(outcome).inc()
        if started is not None and outcome == "accepted":
            self.puback_seconds.observe(time.perf_counter() - started)
