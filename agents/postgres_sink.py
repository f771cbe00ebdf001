"""Sink: ``fleet.readings.v1`` → the ``readings`` table, in batches.

Contract: a batch is acked (its offsets become committable) only after its rows are committed in
Postgres. While Postgres is down the batch is retried with backoff and the partition waits;
nothing is skipped. A row Postgres refuses for its data (not for being down) goes to the dead
letter topic, the rest of the batch is written.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec

from agents.deadletters import dead_letter
from agents.outputs import Output, Producer, publish
from agents.retry import retry_until_done
from connectors.postgres.errors import is_retriable
from connectors.postgres.pool import create_pool
from connectors.postgres.readings import ReadingRow, ReadingStore
from schemas.errors import ValidationFailure
from schemas.events import CuratedReading, decode_curated
from streams.app import app, settings
from streams.topics import readings_topic

log = logging.getLogger(__name__)

STAGE = "sink.postgres"
DEADLETTER = settings.topics.deadletter
_json = msgspec.json.Encoder()


def to_row(reading: CuratedReading) -> ReadingRow:
    sensors = msgspec.to_builtins(reading.sensors)
    return ReadingRow(
        event_id=reading.event_id,
        device_id=reading.device_id,
        ts=reading.ts,
        received_at=reading.received_at,
        source=reading.source,
        sensor_types=sorted(sensors),
        sensors=_json.encode(sensors).decode(),
        metadata=_json.encode(reading.metadata).decode() if reading.metadata else None,
    )


class RowWriter(Protocol):
    """What the sink needs of a store (``ReadingStore``): commit a batch or raise."""

    async def write(self, rows: Sequence[ReadingRow]) -> int: ...


class ReadingsSink:
    """Turns a batch of Faust events into committed rows and dead letters."""

    def __init__(self, store: RowWriter, producer: Producer, backoff_max_s: float) -> None:
        self._store = store
        self._producer = producer
        self._backoff_max_s = backoff_max_s

    async def write_batch(self, events: Sequence[Any]) -> None:
        now = datetime.now(UTC)
        rows: list[tuple[Any, ReadingRow]] = []
        letters: list[Output] = []
        for event in events:
            message = event.message
            try:
                rows.append((message, to_row(decode_curated(message.value))))
            except ValidationFailure as exc:  # undecodable: a dead letter, not a crash
                letters.append(self._letter(message, exc, now))
        letters += await self._write(rows, now)
        await publish(self._producer, letters, backoff_max_s=self._backoff_max_s)

    async def _write(self, rows: list[tuple[Any, ReadingRow]], now: datetime) -> list[Output]:
        """Write the rows; return dead letters for rows Postgres refused."""
        try:
            await self._write_retrying([row for _, row in rows])
        except Exception as exc:  # noqa: BLE001 - retriable errors never get here: data errors
            if len(rows) <= 1:
                return [self._letter(message, exc, now) for message, _ in rows]
            # One bad row fails the whole COPY: split the batch to find it.
            middle = len(rows) // 2
            return await self._write(rows[:middle], now) + await self._write(rows[middle:], now)
        return []

    async def _write_retrying(self, rows: list[ReadingRow]) -> None:
        await retry_until_done(
            lambda: self._store.write(rows),
            what=f"writing {len(rows)} readings to Postgres",
            is_retriable=is_retriable,
            backoff_max_s=self._backoff_max_s,
        )

    @staticmethod
    def _letter(message: Any, exc: BaseException, now: datetime) -> Output:
        log.warning(
            "dead-lettering %s[%d]@%d: %r", message.topic, message.partition, message.offset, exc
        )
        return Output(DEADLETTER, message.key, dead_letter(STAGE, message, exc, now))


async def _open_store() -> ReadingStore:
    pg = settings.postgres
    pool = await retry_until_done(
        lambda: create_pool(pg.dsn(), min_size=pg.pool_min_size, max_size=pg.pool_max_size),
        what="connecting to Postgres",
        is_retriable=is_retriable,
        backoff_max_s=settings.worker.retry_backoff_max_s,
    )
    return ReadingStore(pool)


@app.agent(readings_topic, name="sink-postgres")
async def sink_readings(stream: Any) -> None:
    worker = settings.worker
    store = await _open_store()
    sink = ReadingsSink(store, app.producer, worker.retry_backoff_max_s)
    try:
        async for events in stream.noack_take(worker.sink_batch_max, within=worker.batch_within_s):
            await sink.write_batch(events)
            for event in events:
                await stream.ack(event)
    finally:
        await store.close()
