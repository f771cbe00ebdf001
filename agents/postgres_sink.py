"""Sink: curated envelopes on ``fleet.curated.v1`` → the ``readings`` table, one COPY per batch.

Contract: a batch is acked (its offsets become committable) only after its rows are committed in
Postgres. While Postgres is down the batch is retried with backoff and the partition waits;
nothing is skipped. A row Postgres refuses for its data (not for being down) goes to the dead
letter topic, the rest of the batch is written. Rows are keyed by (device_id, event_id, ts), so
a batch redelivered after a crash inserts nothing twice, and no device's event id can suppress
another device's reading.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol

import asyncpg
import msgspec

from agents.deadletters import KafkaMessage, dead_letter, item_letters
from agents.sink_group import SinkGroup, SinkMessage, start_sink
from connectors.kafka.producer import Record
from connectors.postgres.errors import is_retriable
from connectors.postgres.last_seen import update_last_seen
from connectors.postgres.pool import create_pool
from connectors.postgres.readings import ReadingStore, copy_line
from schemas.envelopes import CuratedRead, CuratedReader
from schemas.errors import ValidationFailure
from schemas.settings import Settings
from streams.context import WorkerContext
from streams.metrics import METRICS, WorkerMetrics, timed
from streams.outputs import Outputs
from streams.retry import retry_until_done

STAGE = "sink.postgres"
_NULL: Final = msgspec.Raw(b"null")
_json = msgspec.json.Encoder()


class _CuratedRow(msgspec.Struct, frozen=True, gc=False):
    """A ``CuratedReading`` as the sink reads it: timestamps stay text (Postgres parses them) and
    nested JSON stays raw bytes, never rebuilt."""

    event_id: str
    device_id: str
    ts: str
    received_at: str
    source: str
    sensors: dict[str, msgspec.Raw]
    metadata: msgspec.Raw = _NULL


_reader = CuratedReader(_CuratedRow)


def line_of(curated: _CuratedRow) -> bytes:
    """The ``readings`` row of a decoded curated reading (raises ValidationFailure)."""
    _check_zoned(curated.ts, "ts")
    _check_zoned(curated.received_at, "received_at")
    metadata = bytes(curated.metadata)
    try:
        return copy_line(
            curated.event_id,
            curated.device_id,
            curated.ts,
            curated.received_at,
            curated.source,
            sorted(curated.sensors),
            _json.encode(curated.sensors),
            None if metadata == b"null" else metadata,
        )
    except ValueError as exc:
        raise ValidationFailure.single((), str(exc), "value") from None


def _check_zoned(text: str, field: str) -> None:
    """Postgres would take "now", "infinity" or a time without a zone too: only a date-time
    with a zone passes here (what is left wrong in it, Postgres refuses)."""
    if text[:4].isdigit() and (text[-1:] == "Z" or text[-6:-5] in ("+", "-")):
        return
    message = "expected an RFC 3339 date-time with a zone"
    raise ValidationFailure.single((field,), message, "datetime")


def observe_ages(
    stamps: Sequence[str],
    refused: Set[int],
    committed_at: datetime,
    metrics: WorkerMetrics = METRICS,
) -> None:
    """Each committed row's age at ``committed_at``, from its reading's ``ts`` (a device clock
    ahead of ours counts as 0), into ``fleet_reading_to_row_seconds`` in one go. Runs for every
    row: plain floats, no helper calls (~0.5 µs a row)."""
    now = committed_at.timestamp()
    parse = datetime.fromisoformat
    ages = []
    for index, text in enumerate(stamps):
        if refused and index in refused:
            continue
        try:
            instant = parse(text)
        except ValueError:
            continue
        if instant.tzinfo is not None:
            age = now - instant.timestamp()
            ages.append(age if age > 0.0 else 0.0)
    metrics.reading_to_row.observe_many(ages)


class RowWriter(Protocol):
    """What the sink needs of a store (``ReadingStore``): commit a batch or raise."""

    async def write(self, lines: Sequence[bytes]) -> int: ...


class LastSeenWriter(Protocol):
    """Moves ``devices.last_seen_at`` forward (``connectors.postgres.last_seen``)."""

    async def __call__(self, seen: Mapping[str, datetime]) -> None: ...


class LatestReceived:
    """Each device's latest ``received_at`` over a batch, compared as the text it came as.

    Curated readings carry UTC times in one format, so comparing the text is exact and cheap;
    texts of different shapes (another length or zone) are compared as parsed instants."""

    __slots__ = ("_latest",)

    def __init__(self) -> None:
        self._latest: dict[str, str] = {}

    def add(self, device_id: str, received_at: str) -> None:
        latest = self._latest.get(device_id)
        if latest is None or _later(received_at, latest):
            self._latest[device_id] = received_at

    def instants(self) -> dict[str, datetime]:
        """The latest times as instants; a device whose text does not parse is left out (its
        rows fail in Postgres and go to the dead letters)."""
        seen: dict[str, datetime] = {}
        for device_id, text in self._latest.items():
            instant = _instant(text)
            if instant is not None:
                seen[device_id] = instant
        return seen


def _later(text: str, than: str) -> bool:
    if len(text) == len(than) and text[-1:] == than[-1:]:
        return text > than
    instant, other = _instant(text), _instant(than)
    return instant is not None and (other is None or instant > other)


def _instant(text: str) -> datetime | None:
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        return None
    return instant if instant.tzinfo is not None else None


@dataclass
class _Rows:
    """A batch's rows, and for each the message and item it came from (for dead letters)."""

    lines: list[bytes] = field(default_factory=list)
    origins: list[tuple[KafkaMessage, CuratedRead[_CuratedRow], int]] = field(default_factory=list)
    """Where each line came from: its message, and its item in that message's read."""
    latest: LatestReceived = field(default_factory=LatestReceived)
    stamps: list[str] = field(default_factory=list)
    """Each line's reading ``ts`` as text, for the reading → row latency."""


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
        rows = _Rows()
        letters = Outputs()
        for message in messages:
            try:
                read = _reader.read(message.value)
            except ValidationFailure as exc:
                letters.add(self._deadletter, dead_letter(STAGE, message, exc, now))
                continue
            self._add_items(message, read, rows, letters, now)
        refused = await self._write(rows.lines, 0, len(rows.lines))
        for index, error in refused:
            message, read, n = rows.origins[index]
            letters.add(self._deadletter, self._refused(message, read, n, error, now))
        observe_ages(rows.stamps, {index for index, _ in refused}, datetime.now(UTC))
        await self._update_last_seen(rows.latest)
        return letters

    def _add_items(
        self,
        message: KafkaMessage,
        read: CuratedRead[_CuratedRow],
        rows: _Rows,
        letters: Outputs,
        now: datetime,
    ) -> None:
        deadletter = self._deadletter
        letters.extend(deadletter, item_letters(STAGE, message, read.failures, now))
        # Runs for every reading: locals instead of attribute look-ups.
        lines, origins, latest, stamps = rows.lines, rows.origins, rows.latest, rows.stamps
        for n, curated in enumerate(read.items):
            try:
                line = line_of(curated)
            except ValidationFailure as exc:
                raw = read.raws()[n]
                letter = dead_letter(
                    STAGE, message, exc, now, original=bytes(raw), item=read.indexes[n]
                )
                letters.add(deadletter, letter)
                continue
            lines.append(line)
            origins.append((message, read, n))
            latest.add(curated.device_id, curated.received_at)
            stamps.append(curated.ts)

    def _refused(
        self,
        message: KafkaMessage,
        read: CuratedRead[_CuratedRow],
        n: int,
        error: Exception,
        now: datetime,
    ) -> Record:
        """The dead letter of a row Postgres refused: the item as read, and its bytes."""
        curated = read.items[n]
        return dead_letter(
            STAGE,
            message,
            error,
            now,
            original=bytes(read.raws()[n]),
            key=curated.device_id,
            event_id=curated.event_id,
        )

    async def _update_last_seen(self, latest: LatestReceived) -> None:
        writer = self._last_seen
        seen = latest.instants()
        if writer is None or not seen:
            return
        await retry_until_done(
            lambda: writer(seen),
            what=f"updating last_seen_at of {len(seen)} devices",
            is_retriable=lambda exc: True,  # one UPDATE of timestamps: no data error to expect
            backoff_max_s=self._backoff_max_s,
        )

    async def _write(self, lines: list[bytes], lo: int, hi: int) -> list[tuple[int, Exception]]:
        """Write rows ``lo:hi``; return the indexes Postgres refused for their data, with the
        error."""
        if lo == hi:
            return []
        try:
            await self._write_retrying(lines[lo:hi])
        except Exception as exc:  # noqa: BLE001 - retriable errors never get here: data errors
            if hi - lo == 1:
                return [(lo, exc)]
            # One bad row fails the whole COPY: split the batch to find it.
            middle = (lo + hi) // 2
            return await self._write(lines, lo, middle) + await self._write(lines, middle, hi)
        return []

    async def _write_retrying(self, lines: list[bytes]) -> None:
        await retry_until_done(
            lambda: self._store.write(lines),
            what=f"writing {len(lines)} readings to Postgres",
            is_retriable=is_retriable,
            backoff_max_s=self._backoff_max_s,
        )


async def _open_pool(settings: Settings) -> asyncpg.Pool:
    pg = settings.postgres
    return await retry_until_done(
        lambda: create_pool(pg, min_size=pg.pool_min_size, max_size=pg.pool_max_size),
        what="connecting to Postgres",
        is_retriable=is_retriable,
        backoff_max_s=settings.worker.retry_backoff_max_s,
    )


GROUP = "sink-postgres"


def sink_group(settings: Settings) -> SinkGroup:
    """Batches go a moment after their first envelope (``FLEET_WORKER__SINK_LINGER_S``), not
    after a whole window: this sink is on the request → row path."""
    worker = settings.worker
    return SinkGroup(
        settings,
        GROUP,
        [settings.topics.curated],
        worker.sink_batch_max,
        linger_s=worker.sink_linger_s,
    )


def register(ctx: WorkerContext) -> None:
    """The sink runs in a consumer group of its own (``agents.sink_group``): a Postgres outage
    stalls only this sink, never the status table, rollups or flows on the same topic."""
    settings = ctx.settings
    group = sink_group(settings)
    sinks: list[ReadingsSink] = []

    async def handle(messages: list[SinkMessage]) -> None:
        if not sinks:
            pool = await _open_pool(settings)
            sinks.append(
                ReadingsSink(
                    timed(ReadingStore(pool), "postgres"),
                    settings.topics.deadletter,
                    settings.worker.retry_backoff_max_s,
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
