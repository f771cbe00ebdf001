"""The operator views at fleet size: 100,000 registered devices, 64 partitions, 4 workers.

The registry and the readings are written straight to the test's own topics (as the API and the
edges would write them), so the workers do the real work: follow the registry, validate and
count every reading, time devices out. Then any worker's overview adds up all four, and the
device list walks page by page through filters to exactly the devices the test made so.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer

from connectors.kafka.admin import delete_app_topics, delete_topics, ensure_topics
from connectors.kafka.partitioner import partition_for
from schemas.devices import Device, encode_device
from schemas.envelopes import encode_item, raw_envelope
from schemas.settings import Settings
from streams.topology import topic_specs
from tests.factories import raw_event, reading
from tests.integration.fleet import ADMIN
from tests.integration.processes import WorkerProcess
from tests.support import free_port, isolated, wait_until

DEVICES = 100_000
PARTITIONS = 64
WORKERS = 4
ENVELOPE_ITEMS = 200


@dataclass(frozen=True)
class Plan:
    """Device n: tagged "lobby" when n % 10 == 0, profile radar when odd; every 5th never
    sends; every 3rd of those that send has a 1 s inactivity timeout (it goes offline)."""

    prefix: str

    def device_id(self, n: int) -> str:
        return f"{self.prefix}-{n:06d}"

    @staticmethod
    def sends(n: int) -> bool:
        return n % 5 != 0

    @staticmethod
    def goes_offline(n: int) -> bool:
        return n % 5 != 0 and n % 3 == 0

    def device(self, n: int, at: datetime) -> Device:
        device_id = self.device_id(n)
        return Device(
            device_id=device_id,
            token_hash=hashlib.sha256(device_id.encode()).hexdigest(),
            profile="radar" if n % 2 else "gas",
            tags=["lobby"] if n % 10 == 0 else [],
            inactivity_timeout_s=1 if self.goes_offline(n) else None,
            created_at=at,
            updated_at=at,
        )

    def status(self, n: int) -> str:
        if not self.sends(n):
            return "never seen"
        return "offline" if self.goes_offline(n) else "online"


@pytest.fixture
def wide(stack_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    settings = isolated(stack_settings, "wide", tmp_path / "faust")
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"partitions": PARTITIONS}),
            "stream": settings.stream.model_copy(update={"status_check_interval_s": 1.0}),
        }
    )
    specs = topic_specs(settings)
    ensure_topics(settings.kafka.bootstrap_servers, specs)
    yield settings
    delete_topics(settings.kafka.bootstrap_servers, [spec.name for spec in specs])
    delete_app_topics(settings.kafka.bootstrap_servers, settings.worker.app_id)


def _produce(settings: Settings, topic: str, records: Iterator[tuple[str, bytes]]) -> None:
    producer = Producer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "acks": "all", "linger.ms": 20}
    )
    for key, value in records:
        partition = partition_for(key, PARTITIONS)
        while True:
            try:
                producer.produce(topic, value, key.encode(), partition=partition)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0


def _registry(plan: Plan, at: datetime) -> Iterator[tuple[str, bytes]]:
    for n in range(DEVICES):
        yield plan.device_id(n), encode_device(plan.device(n, at))


def _readings(plan: Plan) -> Iterator[tuple[str, bytes]]:
    """One reading per sending device, in envelopes per partition (as the edges batch)."""
    by_partition: dict[int, list[tuple[str, bytes]]] = {}
    for n in range(DEVICES):
        if plan.sends(n):
            device_id = plan.device_id(n)
            item = encode_item(raw_event(reading(device_id, n)))
            by_partition.setdefault(partition_for(device_id, PARTITIONS), []).append(
                (device_id, item)
            )
    for items in by_partition.values():
        for start in range(0, len(items), ENVELOPE_ITEMS):
            chunk = items[start : start + ENVELOPE_ITEMS]
            yield chunk[0][0], raw_envelope(item for _, item in chunk)


def _start_workers(settings: Settings, tmp_path: Path) -> tuple[list[WorkerProcess], list[str]]:
    workers, urls = [], []
    for n in range(WORKERS):
        worker = settings.worker.model_copy(
            update={"web_enabled": True, "web_port": free_port(), "datadir": tmp_path / f"w{n}"}
        )
        process = WorkerProcess(
            settings.model_copy(update={"worker": worker}), tmp_path / f"worker-{n}.log"
        )
        process.start()
        workers.append(process)
        urls.append(f"http://127.0.0.1:{worker.web_port}")
    return workers, urls


async def _get(client: httpx.AsyncClient, url: str, **params: str) -> Any:
    answer = await client.get(url, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _walk(client: httpx.AsyncClient, url: str, **params: str) -> list[tuple[str, str]]:
    listed: list[tuple[str, str]] = []
    after = ""
    while True:
        page = await _get(client, f"{url}/ops/api/devices", **params, after=after, limit="500")
        assert page["complete"], page
        listed += [(row["device_id"], row["status"]) for row in page["items"]]
        if page["next"] is None:
            return listed
        after = page["next"]


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_the_overview_and_device_list_hold_at_100k_devices_64_partitions_4_workers(
    wide: Settings, tmp_path: Path
) -> None:
    plan = Plan(f"fleet{wide.worker.app_id[-6:]}")
    _produce(wide, wide.topics.devices, _registry(plan, datetime.now(UTC)))
    workers, urls = _start_workers(wide, tmp_path)
    try:
        _produce(wide, wide.topics.raw, _readings(plan))
        seen = sum(1 for n in range(DEVICES) if plan.sends(n))
        offline = sum(1 for n in range(DEVICES) if plan.goes_offline(n))
        async with httpx.AsyncClient(headers=ADMIN, timeout=60) as client:
            overview: dict[str, Any] = {}

            async def counted() -> bool:
                nonlocal overview
                try:
                    overview = await _get(client, f"{urls[-1]}/ops/api/overview")
                except (httpx.TransportError, AssertionError):
                    return False
                devices: dict[str, Any] = overview["devices"]
                return devices == {"online": seen - offline, "offline": offline, "complete": True}

            logs = lambda: f"{overview.get('devices')}\n{workers[0].log_tail()}"  # noqa: E731
            await wait_until(counted, timeout_s=400, poll_s=2, what=logs)
            assert len(overview["workers"]) == WORKERS
            owned = [
                p for row in overview["workers"] for p in row["partitions"][wide.topics.curated]
            ]
            assert sorted(owned) == list(range(PARTITIONS))

            expected = [(plan.device_id(n), plan.status(n)) for n in range(DEVICES)]
            lobby_unseen = [
                row for n, row in enumerate(expected) if n % 10 == 0 and row[1] == "never seen"
            ]
            assert await _walk(client, urls[0], tag="lobby", status="never seen") == lobby_unseen
            radar_offline = [row for n, row in enumerate(expected) if n % 2 and row[1] == "offline"]
            assert await _walk(client, urls[1], profile="radar", status="offline") == radar_offline
            first = await _get(client, f"{urls[2]}/ops/api/devices", limit="100")
            assert [(r["device_id"], r["status"]) for r in first["items"]] == expected[:100]
            assert first["next"] == expected[99][0]
            refused = await client.get(f"{urls[3]}/ops/api/devices", params={"limit": "0"})
            assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "limit"
    finally:
        for worker in workers:
            worker.stop()
