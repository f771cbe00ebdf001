"""Explicit topic creation.

Faust would auto-create a missing source topic with one partition and then fail with
``PartitionsMismatch`` against its 8-partition changelogs, so every project topic is created here,
with its partition count and configs, before any agent starts.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

# Public names, re-exported by confluent_kafka.admin without __all__ (mypy strict refuses that).
from confluent_kafka.admin._config import AlterConfigOpType, ConfigEntry, ConfigResource
from confluent_kafka.cimpl import NewTopic

from connectors.kafka.errors import KafkaUnavailable, TopicMismatch
from connectors.kafka.security import client_config
from schemas.settings import KafkaSettings


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: Mapping[str, str] = field(default_factory=dict)


def ensure_topics(
    bootstrap_servers: str,
    specs: Iterable[TopicSpec],
    timeout_s: float = 30.0,
    *,
    kafka: KafkaSettings | None = None,
) -> list[str]:
    """Create the missing topics and wait until they are served; return the names created.

    Existing topics get the configs of their spec where they differ (a dead-letter topic made
    with the 1 MiB default would refuse every large dead letter forever). One with fewer
    partitions than its spec raises :class:`TopicMismatch`: adding partitions moves keys to other
    partitions, which breaks per-device ordering, so that is an operator's decision, not a side
    effect of startup. ``kafka``: whose security settings to connect with (default: this
    process's).
    """
    admin = AdminClient(client_config(bootstrap_servers, kafka))
    existing = _partition_counts(admin, timeout_s)
    wanted = list(specs)
    for spec in wanted:
        have = existing.get(spec.name)
        if have is not None and have < spec.partitions:
            raise TopicMismatch(
                f"topic {spec.name} has {have} partitions, settings ask for {spec.partitions}; "
                "raise them on purpose with kafka-topics --alter, or change the setting"
            )
    _fix_configs(admin, [spec for spec in wanted if spec.name in existing], timeout_s)
    missing = [spec for spec in wanted if spec.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [_new_topic(spec) for spec in missing],
        operation_timeout=timeout_s,
        request_timeout=timeout_s,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise KafkaUnavailable(f"could not create topic {name}: {exc}") from exc
        else:
            created.append(name)
    _wait_until_serving(bootstrap_servers, missing, timeout_s, kafka)
    return sorted(created)


def _fix_configs(admin: AdminClient, specs: list[TopicSpec], timeout_s: float) -> None:
    """Set every config of ``specs`` that an existing topic has with another value."""
    if not specs:
        return
    described = admin.describe_configs(
        [ConfigResource(ConfigResource.Type.TOPIC, spec.name) for spec in specs],
        request_timeout=timeout_s,
    )
    changes = []
    for spec, future in zip(specs, described.values(), strict=True):
        current = {name: entry.value for name, entry in future.result().items()}
        wrong = {k: v for k, v in spec.config.items() if current.get(k) != v}
        if wrong:
            entries = [
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                for k, v in wrong.items()
            ]
            changes.append(
                ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries)
            )
    if changes:
        for future in admin.incremental_alter_configs(changes).values():
            future.result()


def delete_topics(bootstrap_servers: str, names: Iterable[str], timeout_s: float = 30.0) -> None:
    """Delete topics (tests clean up their uuid topics with this); missing ones are ignored."""
    admin = AdminClient(client_config(bootstrap_servers))
    for name, future in admin.delete_topics(list(names), operation_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise KafkaUnavailable(f"could not delete topic {name}: {exc}") from exc


def delete_app_topics(bootstrap_servers: str, app_id: str, timeout_s: float = 30.0) -> list[str]:
    """Delete the topics Faust keeps for app ``app_id`` (table changelogs, the assignor's
    leader topic): tests and benchmarks run throwaway apps, and a broker holding thousands of
    leftover partitions gets slow. Returns the names deleted."""
    admin = AdminClient(client_config(bootstrap_servers))
    names = [name for name in _partition_counts(admin, timeout_s) if name.startswith(f"{app_id}-")]
    if names:
        delete_topics(bootstrap_servers, names, timeout_s)
    return sorted(names)


def _wait_until_serving(
    bootstrap_servers: str, specs: list[TopicSpec], timeout_s: float, kafka: KafkaSettings | None
) -> None:
    """Wait until the leader of every partition of the new topics answers an offsets request.

    Metadata lists a leader a moment before that broker serves the partition; until then
    producers and offset look-ups get NOT_LEADER_FOR_PARTITION.
    """
    probe = Consumer(client_config(bootstrap_servers, kafka, **{"group.id": "fleetstream-admin"}))
    deadline = time.monotonic() + timeout_s
    pending = [TopicPartition(s.name, p) for s in specs for p in range(s.partitions)]
    try:
        while pending:
            pending = [tp for tp in pending if not _serves(probe, tp)]
            if pending and time.monotonic() > deadline:
                names = sorted({tp.topic for tp in pending})
                raise KafkaUnavailable(f"partitions not served after {timeout_s}s: {names}")
            if pending:
                time.sleep(0.1)  # poll interval of the offsets probe above
    finally:
        probe.close()


def _serves(probe: Consumer, partition: TopicPartition) -> bool:
    try:
        probe.get_watermark_offsets(partition, timeout=5)
    except KafkaException:
        return False
    return True


def _partition_counts(admin: AdminClient, timeout_s: float) -> dict[str, int]:
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaUnavailable(f"Kafka metadata request failed: {exc}") from exc
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def _new_topic(spec: TopicSpec) -> NewTopic:
    return NewTopic(
        spec.name,
        num_partitions=spec.partitions,
        replication_factor=spec.replication_factor,
        config=dict(spec.config),
    )
