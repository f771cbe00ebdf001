"""Baseline: the per-message Faust design of the previous main (commit 97bdd84), kept runnable.

One reading per Kafka message everywhere: ``validate`` takes batches of raw events with
``noack_take``, validates each (``process_raw``), sends one curated record per reading (or a dead
letter) straight through the worker's producer and acks after the broker acked them all; the
Postgres sink takes batches of curated records and writes each batch with one COPY into a
staging table + ``INSERT .. ON CONFLICT DO NOTHING``, then acks. Self-contained on purpose: it
never imports ``agents`` (rewritten since), only the contracts in ``schemas``.

    FLEET_* settings in the environment (the harness passes isolated ones)
    python -m bench.baselines.faust_per_message
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
import faust

from bench.baselines.rows import COLUMNS, Row, row_of
from connectors.tls import postgres_ssl
from schemas.errors import ValidationFailure
from schemas.events import dead_letter_for, encode_curated, encode_dead_letter
from schemas.settings import Settings, TopicSettings, get_settings
from streams.app import broker_credentials
from tests.pipeline_helpers import process_raw

VALIDATE_BATCH_MAX = 500
SINK_BATCH_MAX = 2000
BATCH_WITHIN_S = 0.2

_STAGE = "readings_stage_baseline"
_CREATE_STAGE = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} "
    "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
)
_MERGE = (
    f"INSERT INTO readings ({', '.join(COLUMNS)}) "  # noqa: S608 - constants only
    f"SELECT {', '.join(COLUMNS)} FROM {_STAGE} ON CONFLICT DO NOTHING"
)


class Store:
    """The previous main's ``ReadingStore``: one COPY + merge per batch, in one transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._days: set[date] = set()

    async def write(self, rows: Sequence[Row]) -> None:
        if not rows:
            return
        async with self._pool.acquire() as conn:
            for day in sorted({row.ts.astimezone(UTC).date() for row in rows} - self._days):
                await conn.execute("SELECT fleet_ensure_readings_partition($1)", day)
                self._days.add(day)
            async with conn.transaction():
                await conn.execute(_CREATE_STAGE)
                await conn.copy_records_to_table(_STAGE, records=rows, columns=COLUMNS)
                await conn.execute(_MERGE)


def _dead_letter(message: Any, error: BaseException, now: datetime) -> bytes:
    key = message.key.decode("utf-8", "replace") if message.key is not None else None
    letter = dead_letter_for(
        error,
        stage="validate",
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=key,
        original=message.value or b"",
        failed_at=now,
    )
    return encode_dead_letter(letter)


def route(message: Any, now: datetime, topics: TopicSettings) -> tuple[str, bytes | None, bytes]:
    """(topic, key, value) of the one output of a raw message: curated reading or dead letter."""
    try:
        curated = process_raw(message.value, now=now)
    except ValidationFailure as failure:
        return (topics.deadletter, message.key, _dead_letter(message, failure, now))
    return (topics.readings, curated.device_id.encode(), encode_curated(curated))


def build_app(settings: Settings) -> Any:
    """The Faust app of the previous main with its two agents."""
    worker, kafka, topics = settings.worker, settings.kafka, settings.topics
    app = faust.App(
        worker.app_id,
        broker=[f"kafka://{s.strip()}" for s in kafka.bootstrap_servers.split(",") if s],
        broker_credentials=broker_credentials(kafka),
        store="memory://",
        autodiscover=False,
        datadir=str(worker.datadir),
        topic_partitions=kafka.partitions,
        topic_replication_factor=kafka.replication_factor,
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        producer_max_batch_size=256 * 1024,
        producer_linger=0.005,
        web_enabled=False,
    )

    def raw_bytes_topic(name: str) -> Any:
        return app.topic(
            name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    async def publish(records: list[tuple[str, bytes | None, bytes]]) -> None:
        pending = [await app.producer.send(t, k, v, None, None, None) for t, k, v in records]
        await asyncio.gather(*pending)

    @app.agent(raw_bytes_topic(topics.raw), name="validate")
    async def validate(stream: Any) -> None:
        async for events in stream.noack_take(VALIDATE_BATCH_MAX, within=BATCH_WITHIN_S):
            now = datetime.now(UTC)
            await publish([route(event.message, now, topics) for event in events])
            for event in events:
                await stream.ack(event)

    @app.agent(raw_bytes_topic(topics.readings), name="sink-postgres")
    async def sink(stream: Any) -> None:
        pg = settings.postgres
        pool = await asyncpg.create_pool(pg.dsn(), min_size=1, max_size=2, ssl=postgres_ssl(pg))
        store = Store(pool)
        try:
            async for events in stream.noack_take(SINK_BATCH_MAX, within=BATCH_WITHIN_S):
                await store.write([row_of(e.message.value) for e in events])
                for event in events:
                    await stream.ack(event)
        finally:
            await pool.close()

    return app


def main() -> None:
    from faust import Worker

    settings = get_settings()
    settings.worker.datadir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings)
    Worker(app, loglevel="warning").execute_from_commandline()


if __name__ == "__main__":
    main()
