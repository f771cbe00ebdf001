"""Benchmark: the validator on the hot path (edge decode + worker re-validation), in-process.

    uv run python -m bench.validate [--readings 20000] [--batch 100]

Prints readings per second for the edge's batch decode and for the worker's ``process_raw``.
No services needed; numbers go into bench/RESULTS.md by hand with the machine and command.
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

import msgspec

from schemas.events import RawEvent, encode_raw_event, new_event_id
from schemas.validation import decode_readings_with_raw
from tests.factories import device_ids, reading
from tests.pipeline_helpers import process_raw


def _bodies(readings: int, batch: int) -> list[bytes]:
    devices = device_ids(50)
    items = [reading(devices[n % 50], n) for n in range(readings)]
    return [json.dumps(items[i : i + batch]).encode() for i in range(0, readings, batch)]


def bench_edge(bodies: list[bytes], max_items: int) -> tuple[int, float]:
    now = datetime.now(UTC)
    started = time.perf_counter()
    count = sum(len(decode_readings_with_raw(b, now=now, max_items=max_items)) for b in bodies)
    return count, time.perf_counter() - started


def bench_worker(bodies: list[bytes], max_items: int) -> tuple[int, float]:
    now = datetime.now(UTC)
    raws = [
        encode_raw_event(
            RawEvent(
                event_id=new_event_id(),
                device_id=parsed.device_id,
                received_at=now,
                source="http",
                payload=msgspec.Raw(bytes(raw)),
            )
        )
        for body in bodies
        for parsed, raw in decode_readings_with_raw(body, now=now, max_items=max_items)
    ]
    started = time.perf_counter()
    for raw_bytes in raws:
        process_raw(raw_bytes, now=now)
    return len(raws), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    bodies = _bodies(args.readings, args.batch)
    for name, run in (("edge decode", bench_edge), ("worker process_raw", bench_worker)):
        count, seconds = run(bodies, args.batch)
        print(f"{name:<20} {count:>7} readings in {seconds:6.3f}s = {count / seconds:>9,.0f}/s")


if __name__ == "__main__":
    main()
