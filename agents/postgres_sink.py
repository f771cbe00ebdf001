"""Sink: curated envelopes on ``fleet.curated.v1`` → the ``readings`` table, one COPY per batch.

Contract: a batch is acked (its offsets become committable) only after its rows are committed in
Postgres. While Postgres is down the batch is retried with backoff and the partition waits;
nothing is skipped. A row Postgres refuses for its data (not for being down) goes to the dead
letter topic, the rest of the batch is written. Rows are keyed by (event_id, ts), so a batch
redelivered after a crash inserts nothing twice.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

import asyncpg
import msgspec

from agents.context import WorkerContext
from agents.deadletters import KafkaMessage, dead_letter
from agents.metrics import timed
from agents.outputs import Outputs
from agents.retry import retry_until_done
from agents.sink_group import SinkGroup, SinkMessage, start_sink
from connectors.postgres.errors import is_retriable
from connectors.postgres.last_seen import update_last_seen
from connectors.postgres.pool import create_pool
from connectors.postgres.readings import ReadingRow, ReadingStore
from schemas.envelopes import decode_curated_items
from schemas.errors import ValidationFailure
from schemas.validation import decode_json
from streams.settings import Settings

STAGE = "sink.postgres"
_TICK = timedelta(microseconds=1)
_NULL: Final = msgspec.Raw(b"null")
_json = msgspec.json.Encoder()


class _CuratedRow(msgspec.Struct, frozen=True):
    """A ``CuratedReading`` as the sink reads it: nested JSON stays raw bytes, never rebuilt."""

    event_id: str
    device_id: str
    ts: datetime
    received_at: datetime
    source: str
    sensors: dict[str, msgspec.Raw]
    metadata: msgspec.Raw = _NULL


_row_decoder = msgspec.json.Decoder(_CuratedRow)


def to_row(item: msgspec.Raw | bytes) -> ReadingRow:
    """The table row for one encoded curated reading (raises ValidationFailure)."""
    curated = decode_json(_row_decoder, item)
    metadata = bytes(curated.metadata)
    return ReadingRow(
        event_id=curated.event_id,
        device_id=curated.device_id,
        ts=curated.ts,
        received_at=curated.received_at,
        source=curated.source,
        sensor_types=sorted(curated.sensors),
        sensors=_json.encode(curated.sensors).decode(),
        metadata=None if metadata == b"null" else metadata.decode(),
    )


class RowWriter(Protocol):
    """What the sink needs of a store (``ReadingStore``): commit a batch or raise."""

    async def write(self, rows: Sequence[ReadingRow]) -> int: ...


@dataclass(frozen=True)
class _Pending:
    message: KafkaMessage
    item: bytes
    row: ReadingRow


class LastSeenWriter(Protocol):
    """Moves ``devices.last_seen_at`` forward (``connectors.postgres.last_seen``)."""

    async def __call__(self, seen: Mapping[str, datetime]) -> None: ...


class ReadingsSink:
    """Turns a batch of curated envelopes into committed rows and dead letters, and keeps
    ``devices.last_seen_at`` current (one statement per batch) when given ``last_seen``."""

    def __init__(
        self,
        store: RowWriter,
        deadletter_topic: str,
        backoff_max_s: float,
        last_seen: LastSeenWriter | None = None,
    ) -> None:
        self._store = store
        self._deadletter = deadletter_topic
        self._backoff_max_s = backoff_max_s
        self._last_seen = last_seen

    async def write_batch(self, messages: Sequence[KafkaMessage]) -> Outputs:
        """Commit the rows of ``messages``; return the dead letters to publish before acking."""
        now = datetime.now(UTC)
        pending: list[_Pending] = []
        letters = Outputs()
        for message in messages:
            try:
                items = decode_curated_items(message.value)
            except ValidationFailure as exc:
                letters.add(self._deadletter, dead_letter(STAGE, message, exc, now))
                continue
            for index, item in enumerate(items):
                try:
                    pending.append(_Pending(message, bytes(item), to_row(item)))
                except ValidationFailure as exc:
                    letter = dead_letter(STAGE, message, exc, now, original=bytes(item), item=index)
                    letters.add(self._deadletter, letter)
        for entry, error in await self._write(pending):
            letter = dead_letter(
                STAGE,
                entry.message,
                error,
                now,
                original=entry.item,
                key=entry.row.device_id,
                event_id=entry.row.event_id,
            )
            letters.add(self._deadletter, letter)
        await self._update_last_seen(pending)
        return letters

    async def _update_last_seen(self, pending: list[_Pending]) -> None:
        writer = self._last_seen
        if writer is None or not pending:
            return
        seen: dict[str, datetime] = {}
        for entry in pending:
            row = entry.row
            if row.received_at > seen.get(row.device_id, row.received_at - _TICK):
                seen[row.device_id] = row.received_at
        await retry_until_done(
            lambda: writer(seen),
            what=f"updating last_seen_at of {len(seen)} devices",
            is_retriable=lambda exc: True,  # one UPDATE of timestamps: no data error to expect
            backoff_max_s=self._backoff_max_s,
        )

    async def _write(self, pending: list[_Pending]) -> list[tuple[_Pending, Exception]]:
        """Write the rows; return the ones Postgres refused for their data, with the error."""
        if not pending:
            return []
        try:
            await self._write_retrying([entry.row for entry in pending])
        except Exception as exc:  # noqa: BLE001 - retriable errors never get here: data errors
            if len(pending) == 1:
                return [(pending[0], exc)]
            # One bad row fails the whole COPY: split the batch to find it.
            middle = len(pending) // 2
            return await self._write(pending[:middle]) + await self._write(pending[middle:])
        return []

    async def _write_retrying(self, rows: list[ReadingRow]) -> None:
        await retry_until_done(
            lambda: self._store.write(rows),
            what=f"writing {len(rows)} readings to Postgres",
            is_retriable=is_retriable,
            backoff_max_s=self._backoff_max_s,
        )


async def _open_pool(settings: Settings) -> asyncpg.Pool:
    pg = settings.postgres
    return await retry_until_done(
        lambda: create_pool(pg.dsn(), min_size=pg.pool_min_size, max_size=pg.pool_max_size),
        what="connecting to Postgres",
        is_retriable=is_retriable,
        backoff_max_s=settings.worker.retry_backoff_max_s,
    )


GROUP = "sink-postgres"


def register(ctx: WorkerContext) -> None:
    """The sink runs in a consumer group of its own (``agents.sink_group``): a Postgres outage
    stalls only this sink, never the status table, rollups or flows on the same topic."""
    settings = ctx.settings
    worker = settings.worker
    group = SinkGroup(settings, GROUP, [settings.topics.curated], worker.sink_batch_max)
    sinks: list[ReadingsSink] = []

    async def handle(messages: list[SinkMessage]) -> None:
        if not sinks:
            pool = await _open_pool(settings)
            sinks.append(
                ReadingsSink(
                    timed(ReadingStore(pool), "postgres"),
                    settings.topics.deadletter,
                    worker.retry_backoff_max_s,
                    last_seen=functools.partial(
                        update_last_seen,
                        pool,
                        resolution=timedelta(seconds=settings.postgres.last_seen_resolution_s),
                    ),
                )
            )
        letters = await sinks[0].write_batch(messages)
        await ctx.publish(letters)

    start_sink(ctx, group, handle)
