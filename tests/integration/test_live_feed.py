"""The WebSocket live feed through a real API process and Kafka: curated envelopes on the
pipeline's curated topic (what the validate agent writes) reach the subscribed clients."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from confluent_kafka import Producer
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from connectors.kafka.partitioner import partition_for
from schemas.envelopes import curated_envelope, single_item_envelope
from schemas.events import curate, raw_event_for
from schemas.settings import DEV_ADMIN_TOKEN, Settings
from schemas.status import decode_status_change
from schemas.validation import decode_reading
from tests.factories import device_ids, reading
from tests.integration.processes import ApiProcess, WorkerProcess
from tests.integration.stream_core import core_settings
from tests.support import free_port, wait_until

QUEUE_MAX = 20
STATUS_TIMEOUT_S = 8


@pytest.fixture
async def served(pipeline: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    async for settings in _serve(pipeline, tmp_path):
        yield settings


@pytest.fixture
async def served_with_worker(pipeline: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    """The API and a worker whose status timer calls a device offline after 8 s of silence."""
    settings = core_settings(pipeline, inactivity_timeout_s=STATUS_TIMEOUT_S)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    worker.start()
    try:
        async for served in _serve(settings, tmp_path):
            yield served
    finally:
        worker.stop()


async def _serve(pipeline: Settings, tmp_path: Path) -> AsyncIterator[Settings]:
    settings = pipeline.model_copy(
        update={
            "api": pipeline.api.model_copy(update={"port": free_port()}),
            "live": pipeline.live.model_copy(update={"client_queue_max": QUEUE_MAX}),
        }
    )
    process = ApiProcess(settings, tmp_path / "api.log")
    process.start()
    url = f"http://127.0.0.1:{settings.api.port}/health"

    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(url)).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await wait_until(up, timeout_s=60, what=lambda: f"the API:\n{process.log_tail()}")
        yield settings
    finally:
        process.stop()


def _url(settings: Settings, token: str = DEV_ADMIN_TOKEN) -> str:
    return f"ws://127.0.0.1:{settings.api.port}/ws?token={token}"


def _curated_records(settings: Settings, device_id: str, count: int, first: int = 0) -> list[Any]:
    now = datetime.now(UTC)
    items = []
    for n in range(first, first + count):
        body = json.dumps(reading(device_id, n)).encode()
        parsed = decode_reading(body, now=now)
        items.append(curate(raw_event_for(parsed, body, source="mqtt", received_at=now), parsed))
    from schemas.events import encode_curated

    return [encode_curated(item) for item in items]


def produce_curated(settings: Settings, batches: dict[str, list[bytes]], per_envelope: int) -> None:
    """Curated envelopes, partition-aligned like the validate agent's, acked by the broker."""
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "acks": "all"})
    partitions = settings.kafka.partitions
    for device_id, items in batches.items():
        for start in range(0, len(items), per_envelope):
            envelope = curated_envelope(items[start : start + per_envelope])
            producer.produce(
                settings.topics.curated, envelope, partition=partition_for(device_id, partitions)
            )
            producer.poll(0)
    assert producer.flush(30) == 0


def produce_raw(settings: Settings, readings: dict[str, int]) -> None:
    """``count`` readings per device on the raw topic, each on its device's partition (as the
    edges write them), acked by the broker."""
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "acks": "all"})
    now = datetime.now(UTC)
    for device_id, count in readings.items():
        for n in range(count):
            body = json.dumps(reading(device_id, n)).encode()
            event = raw_event_for(
                decode_reading(body, now=now), body, source="mqtt", received_at=now
            )
            partition = partition_for(device_id, settings.kafka.partitions)
            producer.produce(settings.topics.raw, single_item_envelope(event), partition=partition)
    assert producer.flush(30) == 0


async def _subscribe(ws: ClientConnection, **filters: Any) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "subscribe", **filters}))
    answer = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answer["type"] == "subscribed", answer
    return dict(answer)


async def _collect(ws: ClientConnection, into: list[dict[str, Any]]) -> None:
    async for frame in ws:
        into.append(json.loads(frame))


async def test_a_client_subscribed_to_one_device_receives_its_readings_and_no_others(
    served: Settings,
) -> None:
    mine, other = device_ids(2)
    async with connect(_url(served)) as filtered, connect(_url(served)) as everything:
        answer = await _subscribe(filtered, device_ids=[mine])
        assert answer["device_ids"] == [mine] and answer["sensor_types"] is None
        await _subscribe(everything)
        got_filtered: list[dict[str, Any]] = []
        got_all: list[dict[str, Any]] = []
        readers = [
            asyncio.create_task(_collect(filtered, got_filtered)),
            asyncio.create_task(_collect(everything, got_all)),
        ]
        produce_curated(
            served,
            {mine: _curated_records(served, mine, 5), other: _curated_records(served, other, 7)},
            3,
        )

        def seen(messages: list[dict[str, Any]], device_id: str) -> int:
            return sum(
                1
                for m in messages
                if m["type"] == "sensor-data" and m["data"]["device_id"] == device_id
            )

        async def all_arrived() -> bool:
            return (
                seen(got_all, mine) == 5
                and seen(got_all, other) == 7
                and seen(got_filtered, mine) == 5
            )

        await wait_until(all_arrived, timeout_s=30, what="every reading at the unfiltered client")
        for task in readers:
            task.cancel()
    assert seen(got_filtered, other) == 0
    assert {m["data"]["device_id"] for m in got_filtered} == {mine}
    assert got_filtered[0]["data"]["sensors"]["mq134"]["gas_concentration"] == 10.0


async def test_a_bad_token_is_closed_with_4401(
    served: Settings,
) -> None:
    async with connect(_url(served, "not-a-token-at-all")) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


def raw_websocket(settings: Settings) -> socket.socket:
    """A WebSocket that subscribes to everything and then never reads: a tiny receive buffer,
    the handshake done by hand, one masked text frame sent."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(("127.0.0.1", settings.api.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /ws?token={DEV_ADMIN_TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(1)
    assert answer.startswith(b"HTTP/1.1 101"), answer
    sock.sendall(masked_text(json.dumps({"type": "subscribe"})))
    return sock


def masked_text(text: str) -> bytes:
    """A client's text frame (under 126 bytes), masked as a client must."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def _exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the server ended the connection before a close frame")
        data += chunk
    return data


def close_frame(sock: socket.socket) -> tuple[int, str]:
    """Read the server's frames (unmasked) up to its close frame: its code and reason."""
    while True:
        first, second = _exactly(sock, 2)
        size = second & 0x7F
        if size == 126:
            size = int.from_bytes(_exactly(sock, 2), "big")
        elif size == 127:
            size = int.from_bytes(_exactly(sock, 8), "big")
        payload = _exactly(sock, size)
        if first & 0x0F == 0x8:
            return int.from_bytes(payload[:2], "big"), payload[2:].decode()


def behind(reason: str) -> int:
    """The messages a "too slow" close reason says were waiting."""
    match = re.fullmatch(r"too slow: (\d+) messages \(\d+ characters\) behind", reason)
    assert match is not None, reason
    return int(match.group(1))


async def dropped_clients(settings: Settings) -> float:
    async with httpx.AsyncClient() as client:
        text = (await client.get(f"http://127.0.0.1:{settings.api.port}/metrics")).text
    for line in text.splitlines():
        if line.startswith("fleet_api_live_clients_dropped_total "):
            return float(line.split()[1])
    return 0.0


async def test_a_client_that_never_reads_is_closed_with_4008_while_a_normal_client_keeps_receiving(
    served: Settings,
) -> None:
    (device_id,) = device_ids(1)
    total = 30_000
    slow = raw_websocket(served)
    try:
        async with connect(_url(served), max_size=None) as normal:
            await _subscribe(normal, device_ids=[device_id])
            got: list[dict[str, Any]] = []
            reader = asyncio.create_task(_collect(normal, got))
            producing = asyncio.create_task(
                asyncio.to_thread(
                    produce_curated,
                    served,
                    {device_id: _curated_records(served, device_id, total)},
                    500,
                )
            )

            async def slow_one_dropped() -> bool:
                return await dropped_clients(served) == 1.0

            await wait_until(slow_one_dropped, timeout_s=60, what="the slow client dropped")
            # Read now, within the server's close timeout: what the kernel buffered, then the
            # close frame the server queued behind it.
            code, reason = await asyncio.to_thread(close_frame, slow)
            assert code == 4008, (code, reason)
            assert behind(reason) >= QUEUE_MAX, reason
            await producing

            async def everything() -> bool:
                return sum(1 for m in got if m["type"] == "sensor-data") == total

            await wait_until(
                everything, timeout_s=120, what=lambda: f"{total} readings, got {len(got)}"
            )
            reader.cancel()
        assert await dropped_clients(served) == 1.0  # the normal client never was
    finally:
        slow.close()


async def test_a_client_that_sends_and_never_reads_the_answers_is_closed_with_4008(
    served: Settings,
) -> None:
    """Each subscribe is answered through the client's bounded queue: sending without reading
    the answers gets the client closed, it cannot grow the API's memory."""
    slow = raw_websocket(served)
    burst = masked_text(json.dumps({"type": "subscribe", "sensor_types": ["pir"]})) * 50_000

    def send() -> None:
        with contextlib.suppress(OSError):  # the server may end the connection meanwhile
            slow.sendall(burst)

    try:
        sending = asyncio.create_task(asyncio.to_thread(send))

        async def slow_one_dropped() -> bool:
            return await dropped_clients(served) == 1.0

        await wait_until(slow_one_dropped, timeout_s=60, what="the sending client dropped")
        code, reason = await asyncio.to_thread(close_frame, slow)
        assert code == 4008, (code, reason)
        assert behind(reason) == QUEUE_MAX, reason  # answers are checked one by one
        await sending
    finally:
        slow.close()


async def test_device_status_transitions_reach_the_clients_that_watch_the_device(
    served_with_worker: Settings,
) -> None:
    """The worker's status agent → fleet.device-status.v1 (the topic the settings name) → the
    feed: online when readings arrive, offline after the timeout, filtered by device only."""
    served = served_with_worker
    warm_up, mine, other = device_ids(3)
    async with (
        connect(_url(served)) as one_device,
        connect(_url(served)) as other_sensors,
    ):
        await _subscribe(one_device, device_ids=[mine])
        await _subscribe(other_sensors, sensor_types=["equipment"])  # no reading has one
        got_one: list[dict[str, Any]] = []
        got_other: list[dict[str, Any]] = []
        readers = [
            asyncio.create_task(_collect(one_device, got_one)),
            asyncio.create_task(_collect(other_sensors, got_other)),
        ]

        def statuses(messages: list[dict[str, Any]]) -> list[tuple[str, int, bool, str]]:
            found = []
            for m in messages:
                if m["type"] == "device-status":
                    change = decode_status_change(json.dumps(m["data"]).encode())  # the contract
                    if change.device_id != warm_up:
                        found.append((change.device_id, change.seq, change.online, change.reason))
            return sorted(found)

        # A device is online only if its reading is processed within the timeout of its receive
        # time: first wait until the worker's status agent runs (a reading of another device).
        await asyncio.to_thread(produce_raw, served, {warm_up: 1})

        async def status_agent_runs() -> bool:
            return any(m["type"] == "device-status" for m in got_other)

        await wait_until(status_agent_runs, timeout_s=120, what="the warm-up device's status")
        await asyncio.to_thread(produce_raw, served, {mine: 3, other: 2})

        async def both_offline() -> bool:
            return len(statuses(got_other)) == 4

        await wait_until(
            both_offline,
            timeout_s=90,
            what=lambda: f"online and offline of both devices, got {statuses(got_other)}",
        )
        for task in readers:
            task.cancel()
    assert statuses(got_other) == [
        (mine, 1, True, "reading"),
        (mine, 2, False, "timeout"),
        (other, 1, True, "reading"),
        (other, 2, False, "timeout"),
    ]
    assert statuses(got_one) == [(mine, 1, True, "reading"), (mine, 2, False, "timeout")]
    readings_one = [m["data"]["device_id"] for m in got_one if m["type"] == "sensor-data"]
    assert readings_one == [mine] * 3
    assert not [m for m in got_other if m["type"] == "sensor-data"]
    status = next(m["data"] for m in got_one if m["type"] == "device-status")
    assert status["timeout_s"] == STATUS_TIMEOUT_S and status["last_seen"] is not None
