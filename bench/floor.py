"""Benchmark: the floor under one worker, i.e. what the library calls that the data contracts
require cost per reading, in-process, before any of our own logic runs.

    uv run python -m bench.floor [--readings 50000] [--repeat 5] [--worker-us 44.5]

Whatever the worker's code does around them, every reading it stores is at least:

1. decoded from its raw envelope (msgspec, ``decode_raw_record``);
2. encoded into its curated envelope (msgspec, ``encode_curated``);
3. encoded as its ``fleet.readings.v1`` Avro value (the writer specialised for the schema);
4. produced as its own Kafka record with a delivery report (librdkafka, the worker's producer
   settings, to a scratch topic on the local stack's broker: ``fleetstream setup`` first);
5. decoded from the curated envelope by each of the three consumers that read every reading
   (device-state, the Postgres sink, the Redis sink), with the readers they use.

Each step is timed on the pipeline benchmark's seed mix (``bench.data``, valid readings) in
process CPU time (librdkafka's threads included), best of ``--repeat``. The sum is a lower bound
on the worker's CPU per reading; ``--worker-us`` (the pipeline benchmark's worker µs a reading)
prints what is left for our own logic, and the budget a 50,000 readings/s worker has (decision
34). Run alone it writes nothing to bench/RESULTS.md; ``make bench`` runs it last and adds its
figures and the budget they leave (:func:`budget_lines`) to the run's block.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from agents.curated import _reader as device_state_reader
from agents.postgres_sink import _reader as postgres_reader
from agents.redis_sink import _reader as redis_reader
from bench.avro_encode import curated_mix
from bench.data import encoded_items, group_envelopes, new_fleet, readings
from bench.stats import Result
from connectors.kafka.security import client_config
from schemas.avro_codec import AvroEncoder
from schemas.envelopes import curated_envelope, decode_raw_record, raw_envelope
from schemas.events import CuratedReading, encode_curated
from schemas.settings import Settings
from streams.context import output_producer_config
from streams.runtime import tune_gc

ENVELOPE_ITEMS = 100
"""Readings per raw and curated envelope, as the pipeline benchmark preloads them."""
TARGET_RATE = 50_000
CORES = 2
SERVICES = ("worker", "kafka", "postgres", "redis")
"""The processes a stored reading costs CPU in (a pipeline result's ``cpu_s``)."""


def best_cpu_s(run: Callable[[], object], repeat: int) -> float:
    """The least process CPU time of ``repeat`` runs of ``run``."""
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def raw_envelopes(count: int) -> list[bytes]:
    now = datetime.now(UTC)
    fleet = new_fleet(200)
    items = encoded_items(readings(fleet, count, invalid_every=None, now=now), now)
    return [raw_envelope(e.items) for e in group_envelopes(items, 8, max_items=ENVELOPE_ITEMS)]


def decode_raws(envelopes: Sequence[bytes]) -> None:
    now = datetime.now(UTC)
    for value in envelopes:
        decode_raw_record(value, record_id="floor", record_time=now, format_header=None)


def curated_envelopes(items: Sequence[bytes]) -> list[bytes]:
    chunks = range(0, len(items), ENVELOPE_ITEMS)
    return [
        curated_envelope(
            items[i : i + ENVELOPE_ITEMS],
            [(0, i, n) for n in range(len(items[i : i + ENVELOPE_ITEMS]))],
        )
        for i in chunks
    ]


def each(call: Callable[[Any], object], values: Sequence[Any]) -> Callable[[], None]:
    def run() -> None:
        for value in values:
            call(value)

    return run


@contextmanager
def scratch_topic(settings: Settings) -> Iterator[str]:
    """A topic for the produce step (the broker does not create topics on its own)."""
    admin = AdminClient(client_config(settings.kafka.bootstrap_servers, settings.kafka))
    topic = f"bench.floor.{uuid.uuid4().hex[:10]}"
    admin.create_topics([NewTopic(topic, settings.kafka.partitions, 1)])[topic].result(30)
    try:
        yield topic
    finally:
        admin.delete_topics([topic])[topic].result(30)


def produce_each(settings: Settings, topic: str, records: Sequence[tuple[bytes, bytes]]) -> float:
    """CPU seconds to produce every record and take its delivery report, as the worker does."""
    producer = Producer(output_producer_config(settings).librdkafka())
    failed: list[object] = []

    def report(err: object, _msg: object) -> None:
        if err is not None:
            failed.append(err)

    producer.produce(topic, b"warm-up", on_delivery=report)
    producer.flush(30)
    started = time.process_time()
    for key, value in records:
        producer.produce(topic, value, key, on_delivery=report)
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("records still queued after 60 s: is the broker up?")
    spent = time.process_time() - started
    if failed:
        raise RuntimeError(f"{len(failed)} records failed, the first: {failed[0]}")
    return spent


def measure(count: int, repeat: int, settings: Settings) -> list[tuple[str, float]]:
    """µs a reading for each step."""
    envelopes = raw_envelopes(count)
    mix: list[CuratedReading] = curated_mix(count)
    encoded = [encode_curated(item) for item in mix]
    curated = curated_envelopes(encoded)
    avro = AvroEncoder("readings", 1).readings()
    values = [avro(item) for item in mix]
    tune_gc(settings.gc_gen0_threshold)  # the collector as the worker runs it
    steps = [
        ("raw envelope decode (msgspec)", best_cpu_s(lambda: decode_raws(envelopes), repeat)),
        ("curated item encode (msgspec)", best_cpu_s(each(encode_curated, mix), repeat)),
        ("fleet.readings.v1 Avro encode", best_cpu_s(each(avro, mix), repeat)),
    ]
    with scratch_topic(settings) as topic:
        records = [
            (item.device_id.encode(), value) for item, value in zip(mix, values, strict=True)
        ]
        steps.append(("fleet.readings.v1 produce + report", produce_each(settings, topic, records)))
    for name, reader in (
        ("device-state", device_state_reader),
        ("Postgres sink", postgres_reader),
        ("Redis sink", redis_reader),
    ):
        seconds = best_cpu_s(each(reader.read, curated), repeat)
        steps.append((f"curated envelope read: {name}", seconds))
    return [(name, seconds / count * 1e6) for name, seconds in steps]


def report(steps: Sequence[tuple[str, float]], worker_us: float | None) -> list[str]:
    floor = sum(us for _, us in steps)
    lines = [f"{name:42} {us:6.2f} µs/reading" for name, us in steps]
    lines.append(f"{'floor (sum)':42} {floor:6.2f} µs/reading")
    budget = 1e6 / TARGET_RATE
    lines.append(
        f"a worker at {TARGET_RATE:,} readings/s has {budget:.1f} µs a reading (one core); "
        f"the machine has {CORES * budget:.1f} for every process together"
    )
    if worker_us is not None:
        lines.append(
            f"worker measured at {worker_us:.1f} µs: {worker_us - floor:.1f} µs are our own logic"
            f" and the framework; at {TARGET_RATE:,}/s they would have {budget - floor:.1f}"
        )
    return lines


def budget_lines(
    steps: Sequence[tuple[str, float]], one_worker: Result | None, cores: int
) -> list[str]:
    """What the floor leaves at the target rate, given the one-worker pipeline run (RESULTS)."""
    floor = sum(us for _, us in steps)
    parts = "; ".join(f"{name} {us:.1f}" for name, us in steps)
    lines = [
        f"floor (`python -m bench.floor`): {floor:.1f} µs a reading in library calls ({parts})"
    ]
    budget = 1e6 / TARGET_RATE
    if one_worker is None or not one_worker.readings:
        return lines
    per_reading = one_worker.cpu_per_million()  # CPU s per million readings = µs a reading
    worker = per_reading.get("worker", 0.0)
    total = sum(per_reading.get(name, 0.0) for name in SERVICES)
    lines += [
        f"budget: one worker took {worker:.1f} µs a reading, {worker - floor:.1f} of them in our "
        f"code and Faust; at {TARGET_RATE:,}/s one worker has {budget:.0f} µs (its agents share "
        f"one core), leaving {budget - floor:.1f} for them",
        f"budget: the pipeline took {total:.1f} µs of CPU a reading in worker, Kafka, Postgres "
        f"and Redis together: {cores} cores top out near {cores * 1e6 / total:,.0f} readings/s "
        f"whatever the number of workers",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--worker-us", type=float, default=None)
    args = parser.parse_args()
    steps = measure(args.readings, args.repeat, Settings())
    print(f"{args.readings:,} readings of the seed mix, best of {args.repeat}")
    for line in report(steps, args.worker_us):
        print(line)


if __name__ == "__main__":
    main()
