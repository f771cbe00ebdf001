"""Baseline: the validate → Postgres pipeline written with Quix Streams (one reading per message).

Runs in its own virtualenv (``bench/.quix-venv``: Quix pins confluent-kafka and pydantic below
ours) with the repository on ``PYTHONPATH`` for ``schemas`` and ``tests.pipeline_helpers``
(msgspec only). The idiomatic Quix shape: a StreamingDataFrame validates each raw event with
``process_raw`` (our worker's validation and curation, one envelope at a time),
branches valid readings to the curated topic and to a batching Postgres sink (COPY into a staging
table + ``INSERT .. ON CONFLICT DO NOTHING`` per checkpoint, as our sink does), and invalid
ones to the dead-letter topic. Stops after ``--expect`` messages, after its final checkpoint.

    bench/.quix-venv/bin/python -m bench.baselines.quix_pipeline --bootstrap B --raw T \
        --readings T --deadletter T --group G --dsn DSN --expect N
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

import psycopg
from quixstreams import Application
from quixstreams.sinks import BatchingSink, SinkBatch

from bench.baselines.rows import COLUMNS, row_of
from schemas.errors import ValidationFailure
from schemas.events import dead_letter_for, encode_curated, encode_dead_letter
from tests.pipeline_helpers import process_raw

STAGE = "readings_stage_quix"


class PostgresCopySink(BatchingSink):  # type: ignore[misc] # untyped in our venv
    """Writes each checkpoint's rows with one COPY + merge (what our sink does per batch)."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._dsn = dsn
        self._conn: Any = None
        self.rows = 0

    def setup(self) -> None:
        self._conn = psycopg.connect(self._dsn)
        with self._conn.cursor() as cur:
            cur.execute(
                f"CREATE TEMPORARY TABLE IF NOT EXISTS {STAGE} "
                "(LIKE readings INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
        self._conn.commit()
        self._days: set[Any] = set()

    def write(self, batch: SinkBatch) -> None:
        rows = [item.value for item in batch]
        days = {row.ts.astimezone(UTC).date() for row in rows} - self._days
        with self._conn.cursor() as cur:
            for day in sorted(days):
                cur.execute("SELECT fleet_ensure_readings_partition(%s)", (day,))
                self._days.add(day)
            columns = ", ".join(COLUMNS)
            with cur.copy(f"COPY {STAGE} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.execute(
                f"INSERT INTO readings ({columns}) SELECT {columns} FROM {STAGE} "  # noqa: S608
                "ON CONFLICT DO NOTHING"
            )
        self._conn.commit()
        self.rows += len(rows)


def route(value: bytes, key: bytes | None, partition: int, offset: int, topic: str) -> Any:
    """(True, key, curated bytes, row) for a valid reading, (False, key, dead letter, None)."""
    now = datetime.now(UTC)
    try:
        curated = process_raw(value, now=now)
    except ValidationFailure as failure:
        letter = dead_letter_for(
            failure,
            stage="validate",
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=key.decode("utf-8", "replace") if key else None,
            original=value,
            failed_at=now,
        )
        return (False, key, encode_dead_letter(letter), None)
    encoded = encode_curated(curated)
    return (True, key, encoded, row_of(encoded))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("--bootstrap", "--raw", "--readings", "--deadletter", "--group", "--dsn"):
        parser.add_argument(name, required=True)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--state-dir", required=True, help="Quix's state (default: ./state)")
    args = parser.parse_args()
    progress = {"processed": 0, "first": 0.0}

    def processed(_topic: str, _partition: int, _offset: int) -> None:
        progress["first"] = progress["first"] or time.perf_counter()
        progress["processed"] += 1
        if progress["processed"] >= args.expect:
            app.stop()  # graceful: the final checkpoint flushes the sink and commits

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        loglevel="WARNING",
        use_changelog_topics=False,
        state_dir=args.state_dir,
        on_message_processed=processed,
    )
    raw = app.topic(args.raw, key_deserializer="bytes", value_deserializer="bytes")
    readings = app.topic(args.readings, key_serializer="bytes", value_serializer="bytes")
    deadletter = app.topic(args.deadletter, key_serializer="bytes", value_serializer="bytes")
    sink = PostgresCopySink(args.dsn)

    routed = app.dataframe(raw).apply(_route, metadata=True)
    valid = routed.filter(lambda r: r[0])
    valid.apply(lambda r: r[2]).to_topic(readings)  # keeps the record key: the device_id
    valid.apply(lambda r: r[3]).sink(sink)
    routed.filter(lambda r: not r[0]).apply(lambda r: r[2]).to_topic(deadletter)
    app.run(timeout=600)
    outcome = {
        "processed": progress["processed"],
        "rows": sink.rows,
        "first_to_last_s": time.perf_counter() - progress["first"],
    }
    sys.stdout.write("RESULT " + json.dumps(outcome) + "\n")


def _route(value: bytes, key: bytes | None, _ts: int, _headers: Any) -> Any:
    from quixstreams import message_context

    context = message_context()
    return route(value, key, context.partition, context.offset, context.topic)


if __name__ == "__main__":
    main()
