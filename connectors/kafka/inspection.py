"""What an operator asks the cluster about: topics (partitions, replicas, configs, offsets) and
consumer groups (committed offsets against the end, i.e. lag).

Read-only, through the admin API (librdkafka), blocking; every call has a timeout and raises
:class:`~connectors.kafka.errors.KafkaUnavailable` when the cluster does not answer. Sizes are
given in records (end - start offset): librdkafka has no DescribeLogDirs, so bytes on disk are
not known here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

# Public names, re-exported by confluent_kafka.admin without __all__ (mypy strict refuses that).
from confluent_kafka.admin._config import ConfigResource
from confluent_kafka.admin._listoffsets import OffsetSpec
from confluent_kafka.admin._resource import ResourceType

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.security import client_config

T = TypeVar("T")

EARLIEST: OffsetSpec = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
LATEST: OffsetSpec = OffsetSpec.latest()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class PartitionState:
    partition: int
    leader: int
    replicas: tuple[int, ...]
    in_sync: tuple[int, ...]
    start: int
    """The earliest offset still held (retention moves it)."""
    end: int
    """The offset the next record will get."""

    @property
    def records(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class TopicState:
    name: str
    partitions: tuple[PartitionState, ...]
    configs: Mapping[str, str]
    """Configs set on the topic (not the broker's defaults)."""

    @property
    def replication(self) -> int:
        return max((len(p.replicas) for p in self.partitions), default=0)

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def under_replicated(self) -> int:
        return sum(len(p.in_sync) < len(p.replicas) for p in self.partitions)


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    """None: the group has no offset for the partition (it would start per its reset policy)."""
    start: int
    end: int

    @property
    def lag(self) -> int:
        """Records the group has yet to finish: from its committed offset, or from the first
        retained one when it never committed here or retention deleted past its offset."""
        done = self.start if self.committed is None else max(self.committed, self.start)
        return max(0, self.end - done)


class Inspector:
    """One admin client, closed with the object (librdkafka frees it when collected)."""

    def __init__(
        self, bootstrap_servers: str, timeout_s: float = 15.0, client_id: str | None = None
    ) -> None:
        self.timeout_s = timeout_s
        extra = {} if client_id is None else {"client.id": client_id}
        self._admin = AdminClient(client_config(bootstrap_servers, **extra))

    def topic_names(self, *, internal: bool = False) -> list[str]:
        metadata = self._call(lambda: self._admin.list_topics(timeout=self.timeout_s))
        names = sorted(metadata.topics)
        return names if internal else [name for name in names if not name.startswith("__")]

    def topics(self, names: Iterable[str], *, configs: bool = True) -> list[TopicState]:
        """The state of each of ``names``; KafkaUnavailable names one that does not exist."""
        wanted = list(names)
        metadata = self._call(lambda: self._admin.list_topics(timeout=self.timeout_s))
        missing = [name for name in wanted if name not in metadata.topics]
        if missing:
            raise KafkaUnavailable(f"no such topic: {', '.join(missing)}")
        layout = {name: metadata.topics[name].partitions for name in wanted}
        parts = [TopicPartition(name, p) for name in wanted for p in layout[name]]
        starts, ends = (
            self.offsets(parts, EARLIEST),
            self.offsets(parts, LATEST),
        )
        set_configs = self._configs(wanted) if configs else {name: {} for name in wanted}
        return [
            TopicState(
                name,
                tuple(
                    PartitionState(
                        p,
                        meta.leader,
                        tuple(meta.replicas),
                        tuple(meta.isrs),
                        starts[(name, p)],
                        ends[(name, p)],
                    )
                    for p, meta in sorted(layout[name].items())
                ),
                set_configs[name],
            )
            for name in wanted
        ]

    def offsets(self, parts: list[TopicPartition], spec: OffsetSpec) -> dict[tuple[str, int], int]:
        """(topic, partition) -> offset for ``spec`` (earliest, latest, or for a timestamp:
        the first offset at or after it, the end offset when none is)."""
        if not parts:
            return {}
        futures = self._call(
            lambda: self._admin.list_offsets(
                {part: spec for part in parts}, request_timeout=self.timeout_s
            )
        )
        return {(p.topic, p.partition): self._wait(f).offset for p, f in futures.items()}

    def groups(self) -> list[str]:
        listing = self._wait(
            self._call(lambda: self._admin.list_consumer_groups(request_timeout=self.timeout_s))
        )
        return sorted(group.group_id for group in listing.valid)

    def lag(self, groups: Iterable[str], topics: Iterable[str] | None = None) -> list[PartitionLag]:
        """Every partition of every topic each group has committed on (only ``topics`` when
        given), including the partitions of such a topic the group never committed on."""
        only = None if topics is None else set(topics)
        committed: dict[str, dict[tuple[str, int], int | None]] = {}
        for group in groups:
            committed[group] = {
                (part.topic, part.partition): part.offset if part.offset >= 0 else None
                for part in self._committed(group)
                if only is None or part.topic in only
            }
        topics_of = {group: {topic for topic, _ in done} for group, done in committed.items()}
        layout = self._partitions(set().union(*topics_of.values()))
        parts = [TopicPartition(topic, p) for topic, p in layout]
        starts, ends = self.offsets(parts, EARLIEST), self.offsets(parts, LATEST)
        return [
            PartitionLag(group, topic, p, done.get((topic, p)), starts[topic, p], ends[topic, p])
            for group, done in sorted(committed.items())
            for topic, p in layout
            if topic in topics_of[group]
        ]

    def _partitions(self, topics: Iterable[str]) -> list[tuple[str, int]]:
        """(topic, partition) of each of ``topics`` still there (one may be deleted meanwhile)."""
        if not topics:
            return []
        metadata = self._call(lambda: self._admin.list_topics(timeout=self.timeout_s))
        return [
            (topic, p)
            for topic in sorted(topics)
            if (found := metadata.topics.get(topic)) is not None and found.error is None
            for p in sorted(found.partitions)
        ]

    def _committed(self, group: str) -> list[TopicPartition]:
        request = [ConsumerGroupTopicPartitions(group)]
        futures = self._call(
            lambda: self._admin.list_consumer_group_offsets(request, request_timeout=self.timeout_s)
        )
        answer = self._wait(futures[group])
        return list(answer.topic_partitions or [])

    def _configs(self, names: list[str]) -> dict[str, dict[str, str]]:
        resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
        futures = self._call(
            lambda: self._admin.describe_configs(resources, request_timeout=self.timeout_s)
        )
        found: dict[str, dict[str, str]] = {}
        for resource, future in futures.items():
            entries = self._wait(future)
            found[resource.name] = {
                key: str(entry.value)
                for key, entry in sorted(entries.items())
                if not entry.is_default and not entry.is_sensitive
            }
        return found

    def _call(self, request: Any) -> Any:
        try:
            return request()
        except KafkaException as exc:
            raise KafkaUnavailable(f"the cluster did not answer: {exc}") from exc

    def _wait(self, future: Future[T]) -> T:
        try:
            return future.result(timeout=self.timeout_s + 5)
        except KafkaException as exc:
            raise KafkaUnavailable(f"the cluster refused or did not answer: {exc}") from exc
        except TimeoutError as exc:
            raise KafkaUnavailable(
                f"the cluster did not answer within {self.timeout_s:.0f} s"
            ) from exc
