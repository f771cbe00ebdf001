"""The project's Kafka topics as specs: names from the settings, shapes fixed here.

Registry topics (devices, flows) are compacted: the latest record per key is the state. Event
topics keep a time-bounded history; the dead-letter topic keeps it longest, since somebody has
to look at it.
"""

from __future__ import annotations

from collections.abc import Iterable

from connectors.kafka.admin import TopicSpec
from schemas.settings import Settings

DEADLETTER_MAX_BYTES = 4 * 1024 * 1024
ENVELOPE_TOPIC_MAX_BYTES = 2 * 1024 * 1024
"""Envelope topics take records up to this size; the edges cut envelopes well below it."""


def _with(spec: TopicSpec, config: dict[str, str]) -> TopicSpec:
    return TopicSpec(spec.name, spec.partitions, spec.replication_factor, {**spec.config, **config})


def _compacted(name: str, settings: Settings) -> TopicSpec:
    """A topic whose latest record per key is the state (registries, table changelogs)."""
    kafka = settings.kafka
    return TopicSpec(
        name, kafka.partitions, kafka.replication_factor, {"cleanup.policy": "compact"}
    )


def topic_specs(settings: Settings) -> list[TopicSpec]:
    topics, kafka = settings.topics, settings.kafka

    def events(name: str, retention_ms: int) -> TopicSpec:
        return TopicSpec(
            name,
            kafka.partitions,
            kafka.replication_factor,
            {"cleanup.policy": "delete", "retention.ms": str(retention_ms)},
        )

    envelopes = {"max.message.bytes": str(ENVELOPE_TOPIC_MAX_BYTES)}
    return [
        _with(events(topics.raw, topics.retention_ms), envelopes),
        # Internal hop between the validate agent and the sinks; short-lived by design.
        _with(events(topics.curated, topics.curated_retention_ms), envelopes),
        events(topics.readings, topics.retention_ms),
        events(topics.alerts, topics.retention_ms),
        _with(
            events(topics.deadletter, topics.deadletter_retention_ms),
            # A dead letter carries the original bytes base64-encoded plus the reason, so it is
            # larger than the event that failed; leave room above the 1 MiB default.
            {"max.message.bytes": str(DEADLETTER_MAX_BYTES)},
        ),
        _compacted(topics.devices, settings),
        _compacted(topics.flows, settings),
        # The last transition per device is its state: compacted like a registry.
        _compacted(topics.device_status, settings),
        _compacted(topics.crashes, settings),
        events(topics.readings_1m, topics.retention_ms),
        # One small record per stored media object (the bytes live in the blob store).
        events(topics.media, topics.retention_ms),
    ]


def changelog_specs(names: Iterable[str], settings: Settings) -> list[TopicSpec]:
    """The worker's table changelogs, created before Faust starts.

    Faust would declare them itself, but a topic it has just created can show 0 partitions in
    the next metadata response, and the first table write then stops the agent with
    ``PartitionsMismatch`` (seen in CI on a fresh app id). Created and waited for here, they
    are served with their partitions before any agent runs.
    """
    return [_compacted(name, settings) for name in names]
