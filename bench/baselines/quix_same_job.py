"""Baseline: the worker's whole job written with Quix Streams, on the same raw envelopes.

The pipeline scenario's peer (``bench/pipeline.py``, ``run_same_job``): it reads the raw topic
the worker read (partition-aligned envelopes of up to 100 readings, no key) and does its job
with Quix's own parts: one stateful ``apply`` per envelope (``bench.baselines.same_job``:
decode, validate and curate each reading with the worker's rules and the device registry's
enrichment, update each device's status and rollup windows in Quix's ``State``: RocksDB with
changelog topics, one get and set per device and envelope), then branches: each curated
reading to the readings topic, dead letters and status transitions to theirs, and two
``BatchingSink``\\ s flushed at each checkpoint: Postgres (one COPY of the rows in our sink's
CSV form, the rollups upserted into ``readings_1m``) and Redis (one pipeline: per device the
latest and status hashes and a pub/sub message, the all-devices channel, the transitions).

The registry is read before the app starts, like the worker's copy: the compacted devices
topic from the beginning to its high watermarks, into an ``agents.enrichment.Enricher``.

Runs in ``bench/.quix-venv`` (Quix pins confluent-kafka and pydantic below ours) with the
repository on ``PYTHONPATH``; the harness stops it (SIGTERM: Quix's graceful stop, a final
checkpoint) once every reading is a row or a dead letter.

    bench/.quix-venv/bin/python -m bench.baselines.quix_same_job --bootstrap B --raw T \
        --devices T --readings T --deadletter T --status T --group G --dsn DSN \
        --redis-url URL --state-dir DIR
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import psycopg
import redis
from confluent_kafka import Consumer, TopicPartition
from quixstreams import Application, message_context
from quixstreams.models.serializers import Serializer
from quixstreams.sinks import BatchingSink, SinkBatch

from agents.enrichment import Enricher
from bench.baselines.quix_pipeline import STAGE, PostgresCopySink
from bench.baselines.same_job import (
    Outputs,
    merge_devices,
    process,
)
from connectors.redis.keys import RedisKeys
from schemas.devices import Device, decode_device
from schemas.status import encode, newest_rollups

_COLUMNS = "event_id, device_id, ts, received_at, source, sensor_types, sensors, metadata"
_COPY = (
    f"COPY {{table}} ({_COLUMNS}) FROM STDIN WITH (FORMAT csv, DELIMITER E'\\x02', QUOTE E'\\x01')"
)
_UPSERT = """
INSERT INTO readings_1m AS r
    (device_id, field, window_start, window_end, count, min, max, sum, mean)
SELECT * FROM unnest(
    %s::text[], %s::text[], %s::timestamptz[], %s::timestamptz[], %s::bigint[],
    %s::float8[], %s::float8[], %s::float8[], %s::float8[])
ON CONFLICT (device_id, field, window_start) DO UPDATE SET
    count = EXCLUDED.count, min = EXCLUDED.min, max = EXCLUDED.max, sum = EXCLUDED.sum,
    mean = EXCLUDED.mean, updated_at = now()
WHERE r.count < EXCLUDED.count
"""
_ALL_CHUNK = 500
_json = msgspec.json.Encoder()


class PostgresSink(PostgresCopySink):
    """Per checkpoint: the rows in one COPY (straight into ``readings``; through a staging
    table and ``ON CONFLICT DO NOTHING`` if one was already stored, as our sink), and the
    rollups upserted (a higher count wins, as ours). The connection and its staging table are
    the per-message peer's (``quix_pipeline``)."""

    def write(self, batch: SinkBatch) -> None:
        outputs: list[Outputs] = [item.value for item in batch]
        lines = [line for out in outputs for line in out.rows]
        rollups = newest_rollups([r for out in outputs for r in out.rollups])
        try:
            self._copy("readings", lines)
        except psycopg.errors.UniqueViolation:
            self._conn.rollback()
            self._copy(STAGE, lines)
            with self._conn.cursor() as cur:
                columns = _COLUMNS
                cur.execute(
                    f"INSERT INTO readings ({columns}) SELECT {columns} FROM {STAGE} "  # noqa: S608
                    "ON CONFLICT DO NOTHING"
                )
        if rollups:
            with self._conn.cursor() as cur:
                cur.execute(
                    _UPSERT,
                    (
                        [r.device_id for r in rollups],
                        [r.field for r in rollups],
                        [r.window_start for r in rollups],
                        [r.window_end for r in rollups],
                        [r.count for r in rollups],
                        [r.min for r in rollups],
                        [r.max for r in rollups],
                        [r.sum for r in rollups],
                        [r.mean for r in rollups],
                    ),
                )
        self._conn.commit()
        self.rows += len(lines)

    def _copy(self, table: str, lines: list[bytes]) -> None:
        with self._conn.cursor() as cur, cur.copy(_COPY.format(table=table)) as copy:
            copy.write(b"".join(lines))


class RedisSink(BatchingSink):  # type: ignore[misc]
    """Per checkpoint, one pipeline: per device the latest hash, the status hash and a pub/sub
    message; the all-devices channel in messages of 500 readings; each transition's status
    fields and messages (``connectors.redis.writer``'s commands, without its Lua script)."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__()
        self._url = url
        self._keys = RedisKeys(prefix)
        self._client: Any = None

    def setup(self) -> None:
        self._client = redis.Redis.from_url(self._url)
        self._client.ping()

    def write(self, batch: SinkBatch) -> None:
        outputs: list[Outputs] = [item.value for item in batch]
        devices = merge_devices([out.devices for out in outputs])
        keys = self._keys
        pipe = self._client.pipeline(transaction=False)
        every: list[bytes] = []
        for device_id, fields in devices.items():
            pipe.hset(keys.latest(device_id), mapping=fields.latest)
            pipe.hset(keys.status(device_id), mapping=fields.status)
            feed = b'{"device_id":%s,"readings":[%s]}' % (
                _json.encode(device_id),
                b",".join(fields.items),
            )
            pipe.publish(keys.readings_channel(device_id), feed)
            every += fields.items
        for start in range(0, len(every), _ALL_CHUNK):
            chunk = b",".join(every[start : start + _ALL_CHUNK])
            pipe.publish(keys.readings_all, b'{"readings":[%s]}' % chunk)
        for change in (c for out in outputs for c in out.changes):
            encoded = encode(change)
            status = {
                "seq": change.seq,
                "online": "1" if change.online else "0",
                "changed_at": change.changed_at.isoformat(),
                "reason": change.reason,
            }
            pipe.hset(keys.status(change.device_id), mapping=status)
            pipe.publish(keys.status_channel(change.device_id), encoded)
            pipe.publish(keys.status_all, encoded)
        pipe.execute()


class _Second(Serializer):  # type: ignore[misc]
    """A (key, value) pair's value: ``to_topic`` takes the key from the pair (``key=``)."""

    def __call__(self, value: tuple[bytes, bytes], ctx: Any) -> bytes:
        return value[1]


def read_registry(bootstrap: str, topic: str, timeout_s: float = 60.0) -> dict[str, Device]:
    """The compacted devices topic from the beginning to its high watermarks (tombstones
    delete), as the worker's registry copy."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bench-quix-registry",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        highs = {}
        for partition in partitions:
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
            if high > 0:
                highs[partition] = high
        consumer.assign([TopicPartition(topic, p, 0) for p in highs])
        devices: dict[str, Device] = {}
        deadline = time.monotonic() + timeout_s
        while highs and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            key = (message.key() or b"").decode()
            value = message.value()
            if value:
                devices[key] = decode_device(value)
            else:
                devices.pop(key, None)
            if (message.offset() or 0) + 1 >= highs.get(message.partition(), 0):
                highs.pop(message.partition(), None)
        if highs:
            raise TimeoutError(f"the registry topic was not read to its end in {timeout_s} s")
        return devices
    finally:
        consumer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--bootstrap", "--raw", "--devices", "--readings", "--deadletter", "--status"):
        parser.add_argument(name, required=True)
    for name in ("--group", "--dsn", "--redis-url", "--state-dir"):
        parser.add_argument(name, required=True)
    parser.add_argument("--redis-prefix", default="fleet")
    parser.add_argument("--commit-interval", type=float, default=5.0, help="Quix's default")
    args = parser.parse_args()
    registry = read_registry(args.bootstrap, args.devices)
    enricher = Enricher(registry, unknown="pass", disabled="deadletter")  # the worker's defaults

    def run_job(value: bytes, _key: Any, _ts: int, _headers: Any, state: Any) -> Outputs:
        context = message_context()
        return process(
            value,
            topic=context.topic,
            partition=context.partition,
            offset=context.offset,
            now=datetime.now(UTC),
            wall=time.time(),
            state=state,
            enricher=enricher,
        )

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        loglevel="WARNING",
        state_dir=args.state_dir,
        commit_interval=args.commit_interval,
    )
    raw = app.topic(args.raw, key_deserializer="bytes", value_deserializer="bytes")
    pairs = {"key_serializer": "bytes", "value_serializer": _Second()}
    readings = app.topic(args.readings, **pairs)
    status = app.topic(args.status, **pairs)
    deadletter = app.topic(args.deadletter, key_serializer="bytes", value_serializer="bytes")

    processed = app.dataframe(raw).apply(run_job, stateful=True, metadata=True)
    processed.apply(lambda out: out.readings, expand=True).to_topic(readings, key=lambda p: p[0])
    processed.apply(lambda out: out.dead, expand=True).to_topic(deadletter)
    processed.apply(
        lambda out: [(c.device_id.encode(), encode(c)) for c in out.changes], expand=True
    ).to_topic(status, key=lambda p: p[0])
    processed.sink(PostgresSink(args.dsn))
    processed.sink(RedisSink(args.redis_url, args.redis_prefix))
    app.run()


if __name__ == "__main__":
    main()
