"""A worker with a fresh app id finds its table changelogs created and served before it starts.

Left to Faust, a changelog it had just created once showed 0 partitions in the next metadata
response, and the first table write stopped the agent with ``PartitionsMismatch``.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from agents.registry import build_worker_app
from cli.runner import create_changelogs
from connectors.kafka.admin import delete_app_topics, delete_topics
from schemas.settings import Settings


def test_changelogs_exist_with_every_partition_served_when_create_returns(
    pipeline: Settings,
) -> None:
    app, _ = build_worker_app(pipeline)
    bootstrap = pipeline.kafka.bootstrap_servers
    names = create_changelogs(app, pipeline)
    try:
        assert {"device-status", "rollups", "flow-state"} <= {
            name.removeprefix(f"{pipeline.worker.app_id}-").removesuffix("-changelog")
            for name in names
        }
        listed = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
        for name in names:
            assert len(listed[name].partitions) == pipeline.kafka.partitions, name
            configs = _configs(bootstrap, name)
            assert configs["cleanup.policy"] == "compact", name
        probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "test-probe"})
        try:
            for name in names:
                for partition in range(pipeline.kafka.partitions):
                    low, high = probe.get_watermark_offsets(
                        TopicPartition(name, partition), timeout=5
                    )
                    assert (low, high) == (0, 0)
        finally:
            probe.close()
    finally:
        delete_topics(bootstrap, names)


def _configs(bootstrap: str, topic: str) -> dict[str, str]:
    from confluent_kafka.admin._config import ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    [future] = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    return {name: entry.value for name, entry in future.result().items()}


def test_an_apps_leftover_topics_are_deleted_and_no_other_apps(pipeline: Settings) -> None:
    app, _ = build_worker_app(pipeline)
    bootstrap, app_id = pipeline.kafka.bootstrap_servers, pipeline.worker.app_id
    names = create_changelogs(app, pipeline)
    neighbour = build_worker_app(
        pipeline.model_copy(
            update={"worker": pipeline.worker.model_copy(update={"app_id": f"{app_id}x"})}
        )
    )[0]
    kept = create_changelogs(neighbour, pipeline)
    try:
        assert delete_app_topics(bootstrap, app_id) == sorted(names)
        # The broker removes deleted topics from its metadata a moment after the deletion.
        listed = _listed_once_gone(bootstrap, set(names))
        assert not set(names) & listed
        assert set(kept) <= listed
    finally:
        delete_topics(bootstrap, kept)


def _listed_once_gone(bootstrap: str, gone: set[str], timeout_s: float = 15.0) -> set[str]:
    """The topics listed once none of ``gone`` is (or at the deadline)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + timeout_s
    while True:
        listed = set(admin.list_topics(timeout=10).topics)
        if not gone & listed or time.monotonic() > deadline:
            return listed
        time.sleep(0.2)  # poll interval of the metadata look-up above
