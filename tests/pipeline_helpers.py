"""The worker's steps as one call each, for tests (and the benchmarks that time one step).

The worker itself runs them batch-wise (``agents.validate``, ``agents.curated``); these take one
envelope or one batch, so a test can check a step without an agent around it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from schemas.events import (
    CuratedReading,
    Enrichment,
    RawEvent,
    UnknownSensors,
    decode_raw_event,
    validate_event_with_sensors,
)
from schemas.validation import DEFAULT_MAX_FUTURE, JsonInput, require_aware

if TYPE_CHECKING:  # the Quix baseline imports this module in a venv that has only `schemas`
    from agents.curated import Batch
    from agents.deadletters import KafkaMessage


def process_raw(
    data: JsonInput,
    *,
    now: datetime,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
) -> CuratedReading:
    """Envelope decode + reading validation + curation: the worker's whole job.

    Raises ValidationFailure for any problem.  Reading errors are located under
    ``payload`` (``loc == ("payload", "sensors", ...)``) because the dead
    letter's ``original`` is the envelope, and carry the envelope's event_id.
    The clock-skew guard uses ``now``; as ``now >= received_at`` in practice,
    a replay never rejects a reading the edge accepted.
    """
    require_aware(now, "now")  # a caller bug, not bad input: fail before decoding
    return validate_event(decode_raw_event(data), now=now, max_future=max_future)


def validate_event(
    raw: RawEvent,
    *,
    now: datetime,
    max_future: timedelta = DEFAULT_MAX_FUTURE,
    enrichment: Enrichment | None = None,
    unknown_sensors: UnknownSensors = "deadletter",
) -> CuratedReading:
    """Validate the reading an envelope item carries and curate it (see :func:`process_raw`).

    With ``unknown_sensors="generic"`` a sensor type the catalogue lacks is accepted if it
    passes the generic rules (named finite numbers and booleans) instead of failing.
    """
    return validate_event_with_sensors(
        raw,
        now=now,
        max_future=max_future,
        enrichment=enrichment,
        unknown_sensors=unknown_sensors,
    ).curated


def read_batch(messages: Sequence[KafkaMessage], *, stage: str, now: datetime) -> Batch:
    """``agents.curated.read_batch_yielding`` without the turns: the whole batch at once."""
    from agents.curated import BatchReader

    reader = BatchReader(stage, now)
    for index, message in enumerate(messages):
        reader.read(index, message)
    return reader.batch
