"""Consumer lag of the app's consumer groups, per partition, as the broker sees it.

The groups are the Faust app's (``FLEET_WORKER__APP_ID``) and the sink groups beside it
(``<app_id>.<sink>``, ``agents.sink_group``). Lag is the partition's end offset minus the
group's committed offset: what the group has not yet finished (Faust commits only acked events,
every ``FLEET_WORKER__COMMIT_INTERVAL_S``). A partition the group never committed counts from
its first retained offset. Read with the admin API (no group is joined), blocking: callers
use :meth:`LagReader.read` from a thread, and keep the answer a few seconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.admin._listoffsets import OffsetSpec  # not re-exported by admin

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.security import client_config

TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


def in_app(group: str, app_id: str) -> bool:
    return group == app_id or group.startswith(f"{app_id}.")


def lag_of(committed: int | None, start: int, end: int) -> int:
    """Records after the committed offset (from ``start`` when nothing was committed)."""
    return max(0, end - (start if committed is None or committed < 0 else committed))


class LagReader:
    def __init__(self, bootstrap_servers: str, app_id: str) -> None:
        self.app_id = app_id
        self._admin = AdminClient(
            client_config(bootstrap_servers, **{"client.id": f"{app_id}-lag-{uuid.uuid4()}"})
        )

    def read(self) -> list[PartitionLag]:
        """Lag of every partition of every topic the app's groups committed offsets for."""
        try:
            return self._read()
        except KafkaException as exc:
            raise KafkaUnavailable(f"consumer lag: {exc}") from exc
        except TimeoutError as exc:  # a request's future gave up: no broker answered in time
            raise KafkaUnavailable(f"consumer lag: no answer from Kafka in {TIMEOUT_S} s") from exc

    def _read(self) -> list[PartitionLag]:
        listed = self._admin.list_consumer_groups(request_timeout=TIMEOUT_S).result(TIMEOUT_S)
        groups = sorted(g.group_id for g in listed.valid if in_app(g.group_id, self.app_id))
        committed: dict[str, dict[tuple[str, int], int]] = {}
        for group in groups:
            request = [ConsumerGroupTopicPartitions(group)]
            answer = self._admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT_S)
            result = answer[group].result(TIMEOUT_S)
            committed[group] = {
                (tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or []
            }
        topics = {topic for offsets in committed.values() for topic, _ in offsets}
        partitions = self._partitions(topics)
        starts = self._offsets(partitions, OffsetSpec.earliest())  # type: ignore[no-untyped-call]
        ends = self._offsets(partitions, OffsetSpec.latest())  # type: ignore[no-untyped-call]
        rows: list[PartitionLag] = []
        for group, offsets in committed.items():
            group_topics = {topic for topic, _ in offsets}
            for topic, partition in partitions:
                if topic not in group_topics:
                    continue
                done = offsets.get((topic, partition))
                start, end = starts[topic, partition], ends[topic, partition]
                rows.append(
                    PartitionLag(
                        group,
                        topic,
                        partition,
                        done if done is not None and done >= 0 else None,
                        end,
                        lag_of(done, start, end),
                    )
                )
        return rows

    def _partitions(self, topics: Iterable[str]) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for topic in sorted(topics):
            metadata = self._admin.list_topics(topic, timeout=TIMEOUT_S).topics.get(topic)
            if metadata is None or metadata.error is not None:
                continue  # deleted meanwhile
            found += [(topic, p) for p in sorted(metadata.partitions)]
        return found

    def _offsets(
        self, partitions: list[tuple[str, int]], spec: OffsetSpec
    ) -> dict[tuple[str, int], int]:
        if not partitions:
            return {}
        request = {TopicPartition(topic, p): spec for topic, p in partitions}
        futures = self._admin.list_offsets(request, request_timeout=TIMEOUT_S)
        return {
            (tp.topic, tp.partition): future.result(TIMEOUT_S).offset
            for tp, future in futures.items()
        }
