"""Benchmark: what one ``fleet.readings.v1`` value costs to encode, JSON vs Avro, in-process.

    uv run python -m bench.avro_encode [--readings 50000] [--repeat 5]

Curates the seed mix of ``bench.data`` (valid readings only; ESP32 and equipment devices,
enriched like a registered device), then times, per reading: the JSON the curated envelope
carries (``encode_curated``, which the worker does either way), and the Avro value of
``fleet.readings.v1``: datum + fastavro's ``schemaless_writer`` with the parsed schema, and as
the worker produces it (datum + the writer generated from the schema); both framed. CPU time
of the process (steadier than wall time on a shared machine), best of ``--repeat`` runs. No
services needed; numbers go into bench/RESULTS.md by hand.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bench.data import new_fleet, raw_event, readings
from schemas.avro_codec import AvroEncoder, reading_datum
from schemas.events import CuratedReading, Enrichment, encode_curated
from tests.pipeline_helpers import validate_event


def curated_mix(count: int) -> list[CuratedReading]:
    now = datetime.now(UTC)
    enrichment = Enrichment(
        device_name="Lobby sensor", profile="esp32", location={"floor": 2}, tags=["lobby"]
    )
    fleet = new_fleet(200)
    return [
        validate_event(raw_event(body, now), now=now, enrichment=enrichment)
        for body in readings(fleet, count, invalid_every=None, now=now)
    ]


def best_us(
    encode: Callable[[CuratedReading], object], items: Sequence[CuratedReading], repeat: int
) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for item in items:
            encode(item)
        best = min(best, time.process_time() - started)
    return best / len(items) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    items = curated_mix(args.readings)
    encoder = AvroEncoder("readings", 1)
    avro = encoder.readings()
    sizes = (sum(len(encode_curated(i)) for i in items), sum(len(avro(i)) for i in items))
    print(
        f"{len(items):,} curated readings; mean bytes JSON {sizes[0] / len(items):.0f}, "
        f"Avro {sizes[1] / len(items):.0f}"
    )
    for name, encode in (
        ("JSON encode_curated", encode_curated),
        ("Avro datum only (reading_datum)", reading_datum),
        ("Avro, fastavro schemaless_writer", lambda item: encoder.encode(reading_datum(item))),
        ("Avro as produced (generated writer)", avro),
    ):
        print(f"{name:42} {best_us(encode, items, args.repeat):6.2f} µs/reading")


if __name__ == "__main__":
    main()
