"""Benchmark: the validate step per batch, the Python reference against the compiled core.

    uv run --frozen python -m bench.native_validate [--devices 2000] [--readings 100000]
        [--rounds 5] [--invalid-every 100]

In process, no services: the same batches of raw envelopes (100 readings each, 64 envelopes a
batch, as the worker takes them by default) of a registered fleet (``bench.fleet_sim.registered``:
names, profiles, tags and locations to enrich with) go through ``agents.validate.Validation``
with ``core=None`` (the reference) and with the compiled core, interleaved round by round so a
busy machine slows both alike. The figure is process CPU per reading, median over rounds, for
JSON and for Avro values on ``fleet.readings.v1`` (the worker writes Avro). Before measuring,
the two paths' outputs are compared: the run stops if they differ.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agents.enrichment import Enricher
from agents.validate import Validation
from bench.data import INVALID_EVERY, encoded_items, group_envelopes, new_fleet, readings
from bench.fleet_sim import registered
from schemas.avro_codec import ReadingsEncoder
from schemas.compiled_core import compiled_core
from schemas.envelopes import raw_envelope
from schemas.events import CuratedReading, encode_curated
from schemas.settings import Settings

PARTITIONS = 8
ENVELOPE_READINGS = 100


@dataclass
class Message:
    value: bytes | None
    offset: int
    partition: int
    key: bytes | None = None
    topic: str = "fleet.raw.v1"
    timestamp: float = 0.0
    headers: Any = None


def validation(devices: int, compiled: bool, encoder: Callable[[CuratedReading], bytes]) -> Any:
    settings = Settings()
    fleet_index = registered(new_fleet(devices, run="same"), datetime.now(UTC))
    core = None
    if compiled:
        core = compiled_core(
            unknown_sensors=settings.stream.unknown_sensor_types,
            limits=settings.generic.limits(),
            max_replays=settings.stream.max_replays,
        )
    return Validation(
        topics=settings.topics,
        curated_partitions=PARTITIONS,
        envelope_max_bytes=settings.kafka.envelope_max_bytes,
        enricher=Enricher(fleet_index, unknown="pass", disabled="deadletter"),
        readings_encoder=encoder,
        core=core,
    )


def cpu_per_reading(step: Any, work: Sequence[list[Message]], count: int) -> float:
    """µs of process CPU a reading for one pass over every batch."""
    now = datetime.now(UTC)
    started = time.process_time()
    for batch in work:
        step.run(batch, now)
    return (time.process_time() - started) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--devices", type=int, default=2_000)
    parser.add_argument("--readings", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--invalid-every", type=int, default=INVALID_EVERY)
    args = parser.parse_args()
    encoders: dict[str, Callable[[CuratedReading], bytes]] = {
        "JSON": encode_curated,
        "Avro": ReadingsEncoder(b"\x00\x00\x00\x00\x01"),
    }
    print(
        f"{args.readings:,} readings, {args.devices:,} registered devices, "
        f"every {args.invalid_every}th invalid, {args.rounds} rounds (median)\n"
    )
    print("| readings values | Python µs/reading | compiled µs/reading | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, encoder in encoders.items():
        work = _work(args)
        steps = {kind: validation(args.devices, kind == "compiled", encoder) for kind in _KINDS}
        _check_same(steps, work)
        times: dict[str, list[float]] = {kind: [] for kind in _KINDS}
        for _ in range(args.rounds):
            for kind in _KINDS:
                times[kind].append(cpu_per_reading(steps[kind], work, args.readings))
        python, compiled = (statistics.median(times[kind]) for kind in _KINDS)
        print(f"| {name} | {python:.2f} | {compiled:.2f} | {python / compiled:.1f}x |")


_KINDS = ("python", "compiled")


def _work(args: argparse.Namespace) -> list[list[Message]]:
    """The raw records as the edges write them, in worker-sized batches; the fleet's ids are
    those of the registry copy (run "same"), so every device is registered."""
    fleet = new_fleet(args.devices, run="same")
    now = datetime.now(UTC)
    bodies = readings(fleet, args.readings, invalid_every=args.invalid_every, now=now)
    envelopes = group_envelopes(encoded_items(bodies, now), PARTITIONS, max_items=ENVELOPE_READINGS)
    messages = [
        Message(raw_envelope(e.items), offset=n, partition=e.partition)
        for n, e in enumerate(envelopes)
    ]
    per_batch = Settings().worker.validate_batch_max
    return [messages[i : i + per_batch] for i in range(0, len(messages), per_batch)]


def _check_same(steps: dict[str, Any], work: Sequence[list[Message]]) -> None:
    now = datetime.now(UTC)
    for batch in work[:3]:
        if steps["python"].run(batch, now).by_topic != steps["compiled"].run(batch, now).by_topic:
            raise SystemExit("the compiled core's outputs differ from the reference's")


if __name__ == "__main__":
    main()
