"""How long a worker takes to recover the device status table of N devices from its changelog.

``python -m bench.status_recovery --devices 100000 --store memory|rocksdb``: fresh topics, N
device states produced straight to the table's changelog topic (not timed), then a worker starts
and the clock runs until its log says "Worker ready" (recovery done, agents running). The same
start with an empty changelog is measured first, so the difference is the recovery itself.
With ``rocksdb`` a second start on the same data dir shows what a warm local store saves.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from bench.context import fresh_topics
from bench.procs import bench_settings, services
from connectors.kafka.admin import TopicSpec, ensure_topics
from connectors.kafka.partitioner import partition_for
from connectors.kafka.security import client_config
from schemas.settings import Settings, get_settings
from schemas.status import DeviceState, encode

READY = "Worker ready"


def _states(count: int) -> list[DeviceState]:
    now = datetime.now(UTC)
    return [
        DeviceState(
            device_id=f"rec-{n:07d}",
            first_seen=now,
            last_seen=now,
            last_ts=now,
            last_event_id="019ab000-0000-7000-8000-000000000000",
            count=n % 1000 + 1,
            online=n % 3 != 0,
            seq=1 + n % 4,
            last_values={"mq134.gas_concentration": 12.5, "pir.motion_detected": True},
            positions={"0": (n, 0)},
        )
        for n in range(count)
    ]


def _fill(settings: Settings, topic: str, count: int) -> None:
    kafka = settings.kafka
    spec = TopicSpec(
        topic, kafka.partitions, kafka.replication_factor, {"cleanup.policy": "compact"}
    )
    ensure_topics(kafka.bootstrap_servers, [spec])
    producer = Producer(client_config(kafka.bootstrap_servers, kafka, **{"linger.ms": 20}))
    for state in _states(count):
        key = state.device_id.encode()
        producer.produce(
            topic, encode(state), key, partition=partition_for(state.device_id, kafka.partitions)
        )
        producer.poll(0)
    if producer.flush(60):
        raise RuntimeError("changelog records not delivered")


def _start_until_ready(settings: Settings, workdir: Path, timeout_s: float = 600) -> float:
    started = time.monotonic()
    with services(settings, workdir, ["worker"]) as (worker,):
        while READY not in worker.tail(400):
            worker.check_alive()
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"worker not ready after {timeout_s} s:\n{worker.tail()}")
            time.sleep(0.1)  # polling a log file; the worker is another process
        return time.monotonic() - started


def measure(base: Settings, workdir: Path, devices: int, store: str) -> dict[str, float]:
    results: dict[str, float] = {}
    for label, count in (("empty", 0), ("filled", devices)):
        settings = bench_settings(base, workdir / label)
        settings = settings.model_copy(
            update={"stream": settings.stream.model_copy(update={"table_store": store})}
        )
        (workdir / label).mkdir(parents=True, exist_ok=True)
        with fresh_topics(settings):
            changelog = f"{settings.worker.app_id}-device-status-changelog"
            if count:
                _fill(settings, changelog, count)
            results[label] = _start_until_ready(settings, workdir / label)
            if store == "rocksdb" and count:
                results["filled, warm store"] = _start_until_ready(settings, workdir / label)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--store", choices=["memory", "rocksdb"], default="memory")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a new temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fleet-status-recovery-"))
    results = measure(get_settings(), workdir / args.store, args.devices, args.store)
    for label, seconds in results.items():
        print(f"{args.store:<8} {label:<20} {seconds:6.1f} s to 'Worker ready'")
    recovery = results["filled"] - results["empty"]
    print(f"{args.store}: recovery of {args.devices:,} device states ≈ {recovery:.1f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
