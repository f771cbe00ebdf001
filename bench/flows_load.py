"""Flows for the ``pipeline`` benchmark: N flows that match every device (``--flows N``).

They are published straight to the bench's own ``fleet.flows.v1`` (the worker reads only the
topic; Postgres is not involved). The mix is what an operator would run: eight function flows
(filter, transform, threshold) and, from N = 9 on, seed 002's two alert rules matching every
device (one Table write per device per batch). No integration nodes: they would measure the
receivers, not the pipeline. The run is finished when the flows agent has acked everything too:
the group's committed offsets on ``fleet.curated.v1`` reach the end (an agent acks only after
its outputs), so a slower flows agent cannot hide behind the Postgres sink.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from connectors.kafka.registry import RegistryPublisher
from connectors.kafka.security import client_config
from schemas.flows import FlowDocument, decode_definition, encode
from schemas.settings import Settings
from streams.flow_engine.examples import GAS_ABOVE_500, PRESENCE_AFTER_HOURS


def definitions(count: int) -> dict[str, dict[str, Any]]:
    function_flow = {
        "name": "gas in kppm above 0.5",
        "match": {"sensors": ["mq134"]},
        "nodes": [
            {"id": "has_gas", "type": "filter", "expr": "sensors.mq134.gas_concentration >= 0.0"},
            {
                "id": "kppm",
                "type": "transform",
                "set": {"k": "sensors.mq134.gas_concentration / 1000.0"},
            },
            {"id": "high", "type": "threshold", "value": "fields.k", "above": 0.5},
        ],
    }
    alerts = [
        GAS_ABOVE_500,
        {**PRESENCE_AFTER_HOURS, "match": {"sensors": ["ld2410"]}},
    ]
    chosen: dict[str, dict[str, Any]] = {}
    for n in range(count):
        extra = n - (count - len(alerts)) if count > len(alerts) else -1
        chosen[f"bench-{n:02d}"] = alerts[extra] if extra >= 0 else function_flow
    return chosen


def publish_flows(settings: Settings, count: int) -> None:
    now = datetime.now(UTC)
    publisher = RegistryPublisher(settings.kafka.bootstrap_servers, settings.topics.flows)
    try:
        publisher.publish(
            [
                (
                    flow_id,
                    encode(
                        FlowDocument(
                            flow_id=flow_id,
                            version=1,
                            enabled=True,
                            definition=decode_definition(body),
                            created_at=now,
                            updated_at=now,
                        )
                    ),
                )
                for flow_id, body in definitions(count).items()
            ]
        )
    finally:
        publisher.close()


def wait_committed(settings: Settings, timeout_s: float) -> float | None:
    """When (epoch s) the worker group had committed ``fleet.curated.v1`` to its end."""
    topic = settings.topics.curated
    consumer = Consumer(
        client_config(
            settings.kafka.bootstrap_servers, settings.kafka, **{"group.id": settings.worker.app_id}
        )
    )
    try:
        partitions = sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        tps = [TopicPartition(topic, p) for p in partitions]
        ends = {tp.partition: consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            done = consumer.committed(tps, timeout=10)
            if all(tp.offset >= ends[tp.partition] for tp in done):
                return time.time()
            time.sleep(0.2)  # polling the broker's committed offsets, not waiting on a guess
        return None
    finally:
        consumer.close()
