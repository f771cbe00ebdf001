"""Benchmark: what ``fleet_reading_to_row_seconds`` costs the Postgres sink, in-process.

    uv run python -m bench.row_age [--rows 3200] [--batches 200]

Times :func:`agents.postgres_sink.observe_ages` (each committed row's age from its reading's
``ts``, binned once per batch) in CPU time; no services needed. Numbers go into bench/RESULTS.md
by hand with the machine and command.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta

from agents.postgres_sink import observe_ages
from streams.metrics import WorkerMetrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=3200, help="rows per sink batch")
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    stamps = [
        (base + timedelta(milliseconds=n)).isoformat().replace("+00:00", "Z")
        for n in range(args.rows)
    ]
    committed = base + timedelta(seconds=5)
    metrics = WorkerMetrics()
    observe_ages(stamps, set(), committed, metrics)  # warm up
    started = time.process_time()
    for _ in range(args.batches):
        observe_ages(stamps, set(), committed, metrics)
    spent = time.process_time() - started
    rows = args.rows * args.batches
    print(f"{rows:,} rows in {args.batches} batches: {spent / rows * 1e9:.0f} ns CPU a row")


if __name__ == "__main__":
    main()
