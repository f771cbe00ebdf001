"""``fleetstream topics list|describe`` and ``fleetstream lag`` against the real broker."""

from __future__ import annotations

import uuid

from confluent_kafka import Consumer, TopicPartition

from schemas.settings import Settings
from tests.integration.cli_tools import fleetstream, json_out
from tests.integration.kafka_tools import partition_ends, produce


def _fill(settings: Settings, count: int) -> dict[int, int]:
    topic = settings.topics.raw
    produce(
        settings.kafka.bootstrap_servers,
        topic,
        [(f"dev-{n}".encode(), b"{}") for n in range(count)],
    )
    return partition_ends(settings.kafka.bootstrap_servers, topic)


def test_topics_list_and_describe_show_partitions_offsets_and_configs(pipeline: Settings) -> None:
    topic = pipeline.topics.raw
    ends = _fill(pipeline, 5_000)
    assert sum(ends.values()) == 5_000

    listed = json_out(fleetstream(pipeline, "topics", "list", "--prefix", topic, "--json"))
    assert listed == [{"name": topic, "partitions": 3, "replication": 1, "records": 5_000}]

    described = json_out(fleetstream(pipeline, "topics", "describe", topic, "--json"))
    assert {p["partition"]: p["end"] for p in described["partition_states"]} == ends
    assert all(
        p["start"] == 0 and p["in_sync"] == p["replicas"] for p in described["partition_states"]
    )
    assert described["records"] == 5_000 and described["under_replicated"] == 0
    assert described["configs"]["retention.ms"] == str(pipeline.topics.retention_ms)

    table = fleetstream(pipeline, "topics", "describe", topic).stdout
    assert table.splitlines()[0] == (
        f"{topic}: 3 partitions, replication 1, 5,000 records, 0 under-replicated"
    )
    missing = fleetstream(pipeline, "topics", "describe", f"{topic}.missing", code=1)
    assert "no such topic" in missing.stderr


def test_lag_is_end_minus_committed_per_group_and_partition(pipeline: Settings) -> None:
    topic = pipeline.topics.raw
    ends = _fill(pipeline, 3_000)
    group = f"cli-lag-{uuid.uuid4().hex[:10]}"
    committer = Consumer({"bootstrap.servers": pipeline.kafka.bootstrap_servers, "group.id": group})
    try:
        committer.commit(
            offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, ends[1])],
            asynchronous=False,
        )
    finally:
        committer.close()

    rows = json_out(fleetstream(pipeline, "lag", "--group", group, "--json"))
    committed = {0: 5, 1: ends[1]}  # partition 2: never committed, counts from its start (0)
    assert rows == [
        {
            "group": group,
            "topic": topic,
            "partition": p,
            "committed": committed.get(p),
            "start": 0,
            "end": ends[p],
            "lag": ends[p] - committed.get(p, 0),
        }
        for p in range(len(ends))
    ]
    assert len(rows) == 3 and rows[1]["lag"] == 0
    table = fleetstream(pipeline, "lag", "--group", group).stdout
    assert table.splitlines()[-1] == f"{group}: lag {ends[0] - 5 + ends[2]:,}"
    other = json_out(fleetstream(pipeline, "lag", "-g", group, "--topic", "elsewhere", "--json"))
    assert other == []
