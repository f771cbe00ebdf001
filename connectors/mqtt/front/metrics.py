"""The MQTT front's metrics: connections, refusals, publishes by outcome, PUBACK latency.

Prometheus scrapes them at the front's ``/metrics``; :meth:`FrontMetrics.snapshot` is the same
numbers as JSON for its ``/health``, which the workers' operator views read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from connectors.mqtt.front.ingest import SUCCESS, KafkaTrouble, not_taken

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
        self._accepted = self.publishes.labels("accepted")  # every publish: no label lookup

    def connected(self, change: int) -> None:
        self.connections.inc(change)

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def taken(self, done: asyncio.Future[int], started: float | None) -> None:
        """A publish whose outcome ``done`` holds (its reason, or why Kafka did not take it)."""
        if done.cancelled():
            self.not_taken("cancelled")
        elif (error := done.exception()) is not None:
            self.not_taken("kafka-unavailable" if isinstance(error, KafkaTrouble) else "error")
        elif done.result() == SUCCESS and started is not None:
            self.accepted([started], time.perf_counter())
        else:
            self.outcome(done.result())

    def accepted(self, started: Sequence[float], now: float) -> None:
        """Publishes Kafka took, PUBACKed at ``now`` (``time.perf_counter``), each read at
        its ``started``."""
        self._accepted.inc(len(started))
        observe = self.puback_seconds.observe
        for at in started:
            observe(now - at)

    def outcome(self, reason: int) -> None:
        """A publish answered with ``reason`` without a Kafka failure (QoS 0 counted here)."""
        if reason == SUCCESS:
            self._accepted.inc()
        else:
            self.publishes.labels(f"refused:{reason:#x}").inc()

    def not_taken(self, outcome: str) -> None:
        self.publishes.labels(outcome).inc()

    def sent(self, done: asyncio.Future[None], reason: int) -> None:
        """A publish that is not PUBACKed (QoS 0, or left in flight) once Kafka answered."""
        if done.cancelled():
            self.not_taken("cancelled")
        elif (error := done.exception()) is not None:
            self.not_taken(not_taken(error))
        else:
            self.outcome(reason)

    def snapshot(self) -> dict[str, Any]:
        """Totals since this front started, and the PUBACK latency's p50 and p99 (the upper
        bound of the bucket each falls in, as Prometheus' histogram_quantile would say)."""
        buckets = [
            (float(sample.labels["le"]), sample.value)
            for sample in _samples(self.puback_seconds, "_bucket")
        ]
        count = buckets[-1][1] if buckets else 0.0
        return {
            "connections": int(sum(s.value for s in _samples(self.connections, "connections"))),
            "publishes": _by_label(_samples(self.publishes, "_total"), "outcome"),
            "refusals": _by_label(_samples(self.refusals, "_total"), "reason"),
            "puback": {
                "count": int(count),
                "p50_s": _json_bound(quantile(buckets, 0.5)),
                "p99_s": _json_bound(quantile(buckets, 0.99)),
            },
        }


def quantile(buckets: Sequence[tuple[float, float]], q: float) -> float | None:
    """The upper bound of the first cumulative bucket holding a share ``q`` of the count;
    None without observations, infinity when it lies beyond the last finite bucket."""
    if not buckets or buckets[-1][1] == 0:
        return None
    wanted = q * buckets[-1][1]
    return next(bound for bound, cumulative in buckets if cumulative >= wanted)


def _json_bound(bound: float | None) -> float | str | None:
    """JSON has no infinity: a quantile beyond the last bucket is Prometheus' "+Inf"."""
    return "+Inf" if bound == float("inf") else bound


def _samples(metric: Counter | Gauge | Histogram, suffix: str) -> list[Any]:
    return [s for family in metric.collect() for s in family.samples if s.name.endswith(suffix)]


def _by_label(samples: list[Any], label: str) -> dict[str, int]:
    return {sample.labels[label]: int(sample.value) for sample in samples}
