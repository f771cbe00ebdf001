"""Validate and curate: ``fleet.raw.v1`` → ``fleet.readings.v1`` or ``fleet.deadletter.v1``.

Every raw event ends up in exactly one of the two output topics: valid readings are curated for
analytics, anything else (bad JSON, a failed rule, even a bug in a validator) becomes a dead
letter with the reason and the original bytes. Events are acked, and so their offsets become
committable, only after all outputs of their batch were acked by the broker.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from agents.deadletters import dead_letter
from agents.outputs import Output, Producer, publish
from schemas.errors import ValidationFailure
from schemas.events import encode_curated, process_raw
from streams.app import app, settings
from streams.topics import raw_topic

log = logging.getLogger(__name__)

STAGE = "validate"
READINGS = settings.topics.readings
DEADLETTER = settings.topics.deadletter


def output_producer() -> Producer:
    """The worker's Kafka producer (a function, so unit tests can swap it)."""
    producer: Producer = app.producer
    return producer


def route(event: Any, now: datetime) -> Output:
    """The one output for a raw Faust event: a curated reading or a dead letter."""
    message = event.message
    try:
        curated = process_raw(message.value, now=now)
    except ValidationFailure as failure:
        return Output(DEADLETTER, message.key, dead_letter(STAGE, message, failure, now))
    except Exception as exc:  # a validator bug must not stall the partition
        log.exception(
            "validator crashed on %s[%d]@%d", message.topic, message.partition, message.offset
        )
        return Output(DEADLETTER, message.key, dead_letter(STAGE, message, exc, now))
    return Output(READINGS, curated.device_id.encode(), encode_curated(curated))


@app.agent(raw_topic, name="validate")
async def validate(stream: Any) -> None:
    worker = settings.worker
    async for events in stream.noack_take(worker.validate_batch_max, within=worker.batch_within_s):
        now = datetime.now(UTC)
        outputs = [route(event, now) for event in events]
        await publish(output_producer(), outputs, backoff_max_s=worker.retry_backoff_max_s)
        for event in events:
            await stream.ack(event)
