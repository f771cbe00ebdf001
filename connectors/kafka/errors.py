"""Errors of the Kafka connectors; ``retriable`` tells callers whether trying again can help."""

from __future__ import annotations

from schemas.errors import FleetError


class KafkaUnavailable(FleetError):
    """The broker did not ack in time or refused the write; the caller may retry later."""

    retriable = True


class ProducerBackpressure(FleetError):
    """The local producer queue is full: slow down and retry after a pause."""

    retriable = True


class TopicMismatch(FleetError):
    """An existing topic disagrees with its spec in a way we must not fix silently."""


class KafkaRefused(FleetError):
    """The broker refused a record for what it is (too large, invalid): retrying cannot help."""
