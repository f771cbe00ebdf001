"""The MQTT front's numbers as /health gives them to the operator views."""

from __future__ import annotations

import asyncio

from connectors.mqtt.front.ingest import SUCCESS, KafkaTrouble
from connectors.mqtt.front.metrics import FrontMetrics, quantile


def test_the_quantile_is_the_upper_bound_of_the_first_bucket_holding_its_share() -> None:
    buckets = [(0.01, 50.0), (0.1, 98.0), (1.0, 99.0), (float("inf"), 100.0)]
    assert quantile(buckets, 0.5) == 0.01
    assert quantile(buckets, 0.51) == 0.1
    assert quantile(buckets, 0.99) == 1.0
    assert quantile(buckets, 1.0) == float("inf")
    assert quantile([(0.01, 0.0), (float("inf"), 0.0)], 0.5) is None


async def test_the_snapshot_counts_connections_outcomes_refusals_and_puback_latency() -> None:
    metrics = FrontMetrics()
    metrics.connected(+1)
    metrics.connected(+1)
    metrics.connected(-1)
    metrics.refused("bad-credentials")
    metrics.refused("bad-credentials")
    loop = asyncio.get_running_loop()
    accepted, refused, broken = loop.create_future(), loop.create_future(), loop.create_future()
    accepted.set_result(SUCCESS)
    refused.set_result(0x87)
    broken.set_exception(KafkaTrouble("no leader"))
    metrics.taken(accepted, started=None)
    metrics.taken(refused, started=None)
    metrics.taken(broken, started=None)
    snapshot = metrics.snapshot()
    assert snapshot["connections"] == 1
    assert snapshot["refusals"] == {"bad-credentials": 2}
    assert snapshot["publishes"] == {"accepted": 1, "refused:0x87": 1, "kafka-unavailable": 1}
    # latency is observed only for accepted publishes that carry a start time
    assert snapshot["puback"] == {"count": 0, "p50_s": None, "p99_s": None}


def test_a_latency_beyond_the_last_bucket_is_prometheus_plus_inf_not_json_infinity() -> None:
    metrics = FrontMetrics()
    metrics.puback_seconds.observe(0.002)
    metrics.puback_seconds.observe(60.0)
    puback = metrics.snapshot()["puback"]
    assert puback == {"count": 2, "p50_s": 0.0025, "p99_s": "+Inf"}
