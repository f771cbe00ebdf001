"""Baseline: the seed 001 service design (shared/seeds/001_*), fed from Kafka.

The seed is a FastAPI service that, for every reading, validates it with a Pydantic model,
INSERTs one row through an async SQLAlchemy session (asyncpg, pool of 10 + 20 overflow) and
commits, then LPUSHes the reading as JSON onto the Redis list ``sensor_data_queue`` for the ML
service. Here the same per-reading work runs on readings consumed from Kafka (one per message),
with 10 readings in flight at a time (the seed's base pool: ten concurrent requests). Invalid
readings are counted as rejected (the seed answers 422; it has no dead letters). Rows go to a
table of the seed's shape named for the run; the harness drops it and the Redis list afterwards.

    python -m bench.baselines.seed001 --topic T --group G --table TBL --queue Q --expect N
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from confluent_kafka import Consumer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import Column, DateTime, MetaData, Table, Text, func, insert
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from connectors.kafka.security import client_config
from connectors.redis.clients import async_client
from schemas.settings import get_settings

IN_FLIGHT = 10


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Ld2410(_Model):
    presence: bool
    moving_target: bool | None = None
    stationary_target: bool | None = None
    distance_cm: Annotated[int, Field(ge=0, le=800)] | None = None
    moving_energy: Annotated[int, Field(ge=0, le=100)] | None = None
    stationary_energy: Annotated[int, Field(ge=0, le=100)] | None = None
    detection_distance_cm: Annotated[int, Field(ge=0, le=800)] | None = None


class Pir(_Model):
    motion_detected: bool


class Mq134(_Model):
    gas_concentration: Annotated[float, Field(ge=0, le=10_000)]
    raw_value: Annotated[int, Field(ge=0, le=4095)] | None = None


class Equipment(_Model):
    temperature: Annotated[float, Field(ge=-50, le=200)] | None = None
    vibration: Annotated[float, Field(ge=0, le=1000)] | None = None
    pressure: Annotated[float, Field(ge=0, le=1000)] | None = None
    humidity: Annotated[float, Field(ge=0, le=100)] | None = None
    rpm: Annotated[float, Field(ge=0, le=100_000)] | None = None
    power_kw: Annotated[float, Field(ge=0)] | None = None


class Sensors(_Model):
    ld2410: Ld2410 | None = None
    pir: Pir | None = None
    mq134: Mq134 | None = None
    equipment: Equipment | None = None

    @model_validator(mode="after")
    def at_least_one(self) -> Sensors:
        if not any((self.ld2410, self.pir, self.mq134, self.equipment)):
            raise ValueError("at least one sensor is required")
        return self


class SensorReading(_Model):
    """The seed's request model (app/models.py), for our sensor types."""

    device_id: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")]
    timestamp: AwareDatetime
    sensors: Sensors
    metadata: dict[str, Any] | None = None


def sensor_table(name: str) -> Table:
    """The seed's ``sensor_data`` table (app/schemas.py): uuid id, indexed device and time."""
    return Table(
        name,
        MetaData(),
        Column("id", UUID(as_uuid=True), primary_key=True, default=uuid.uuid4),
        Column("device_id", Text, nullable=False, index=True),
        Column("timestamp", DateTime(timezone=True), nullable=False, index=True),
        Column("sensors", JSONB, nullable=False),
        Column("metadata", JSONB),
        Column("created_at", DateTime(timezone=True), server_default=func.now()),
    )


class Service:
    """The seed's ``SensorService.ingest``: validate, INSERT + commit, LPUSH; per reading."""

    def __init__(self, engine: AsyncEngine, table: Table, redis: Any, queue: str) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._table = table
        self._redis = redis
        self._queue = queue
        self.inserted = 0
        self.rejected = 0

    async def ingest(self, value: bytes) -> None:
        raw = msgspec.json.decode(value)
        try:
            reading = SensorReading.model_validate(raw.get("payload", raw))
        except ValidationError:
            self.rejected += 1  # the seed answers 422
            return
        row_id = uuid.uuid4()
        sensors = reading.sensors.model_dump(exclude_none=True)
        async with self._sessions() as session:
            await session.execute(
                insert(self._table).values(
                    id=row_id,
                    device_id=reading.device_id,
                    timestamp=reading.timestamp,
                    sensors=sensors,
                    metadata=reading.metadata,
                )
            )
            await session.commit()
        message = {
            "id": str(row_id),
            "device_id": reading.device_id,
            "timestamp": reading.timestamp.isoformat(),
            "sensors": sensors,
            "queued_at": datetime.now().astimezone().isoformat(),
        }
        await self._redis.lpush(self._queue, json.dumps(message))
        self.inserted += 1


async def run(args: argparse.Namespace) -> dict[str, float]:
    settings = get_settings()
    pg = settings.postgres
    url = (
        f"postgresql+asyncpg://{pg.user}:{pg.password.get_secret_value()}"
        f"@{pg.host}:{pg.port}/{pg.database}"
    )
    engine = create_async_engine(url, pool_size=10, max_overflow=20)
    table = sensor_table(args.table)
    async with engine.begin() as conn:
        await conn.run_sync(table.metadata.create_all)
    redis = async_client(settings.redis)
    service = Service(engine, table, redis, args.queue)
    consumer = Consumer(
        {
            **client_config(settings.kafka.bootstrap_servers, settings.kafka),
            "group.id": args.group,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([args.topic])
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)

    async def handler() -> None:
        while True:
            value = await queue.get()
            try:
                await service.ingest(value)
            finally:
                queue.task_done()

    handlers = [asyncio.create_task(handler()) for _ in range(IN_FLIGHT)]
    seen, first = 0, 0.0
    try:
        while seen < args.expect:
            for message in await asyncio.to_thread(consumer.consume, 500, 1.0):
                value = message.value()
                if message.error() is not None or value is None:
                    continue
                first = first or time.perf_counter()
                seen += 1
                await queue.put(value)
                if seen >= args.expect:
                    break
        await queue.join()
        last = time.perf_counter()
    finally:
        for task in handlers:
            task.cancel()
        consumer.close()
        await redis.aclose()
        await engine.dispose()
    return {
        "processed": seen,
        "inserted": service.inserted,
        "rejected": service.rejected,
        "first_to_last_s": last - first,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--topic", "--group", "--table", "--queue"):
        parser.add_argument(name, required=True)
    parser.add_argument("--expect", type=int, required=True)
    outcome = asyncio.run(run(parser.parse_args()))
    sys.stdout.write("RESULT " + json.dumps(outcome) + "\n")


if __name__ == "__main__":
    main()
