"""Scenario ``mqtt-front``: MQTT publishers → one MQTT front → Kafka → the worker → rows.

Fresh topics, ``connections`` devices registered through the device registry (Postgres and
``fleet.devices.v1``; the front authenticates from the registry, no broker users), one worker
and one ``fleetstream mqtt-front`` on free ports. A warm-up message goes all the way to a row.
Then publisher processes (``PUBLISHERS``) open one MQTT 5 connection per device and publish
single-reading messages at QoS 1, at most ``window`` unacked per connection (the front's
receive maximum is 64), round after round until each device has sent its share. The front
PUBACKs each message only after Kafka acked it, so publishers and the front run together:
the clock runs from GO until every reading is a row, and each publisher times every PUBACK
from writing the PUBLISH to reading its PUBACK (what a device waits).

The publishers speak MQTT from raw asyncio sockets (a few µs a message, where paho costs tens
on the same two cores). Every wait is bounded; everything started is stopped by pid; devices,
rows and topics are deleted.

The publisher half runs as ``python -m bench.mqtt_front`` with a JSON spec on stdin: it
connects, prints ``READY``, waits for ``GO``, publishes, and prints a JSON summary line.
"""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any

import httpx

from bench import fleet_devices
from bench.context import Context, fresh_topics, wait_run_stored
from bench.cpu import CpuMeter
from bench.data import new_fleet
from bench.mqtt import TOPIC, Published, _payloads, _read_line, _say, _stderr, collect_summaries
from bench.procs import BenchError, Started, bench_settings, services
from bench.stats import Result, summarize
from schemas.settings import Settings
from tests.support import free_port

CONNECTIONS = 32
WINDOW = 16
"""Unacked PUBLISH packets per connection (``CONNECTIONS * WINDOW`` in flight at most)."""
PUBLISHERS = 2
CONNECT_S = 30.0
READY_S = 90.0
TIME_LIMIT_S = 180.0


def run(
    ctx: Context,
    *,
    count: int = 100_000,
    connections: int = CONNECTIONS,
    window: int = WINDOW,
    time_limit_s: float = TIME_LIMIT_S,
) -> Result:
    settings = _front_settings(bench_settings(ctx.base, ctx.workdir))
    fleet = new_fleet(connections + 1)
    warm_up, devices = fleet.devices[0], fleet.devices[1:]
    per_device = count // len(devices)
    with fresh_topics(settings):
        tokens = asyncio.run(fleet_devices.register(settings, fleet.devices))
        try:
            ctx.progress(f"mqtt-front: {len(devices)} devices registered; worker and front…")
            with services(settings, ctx.workdir, ["worker", "mqtt-front"]) as started:
                _wait_healthy(settings, started)
                _warm_up(ctx, settings, warm_up, tokens[warm_up], started)
                result = _measure(
                    ctx, settings, [(d, tokens[d]) for d in devices], per_device, window,
                    started, time_limit_s,
                )  # fmt: skip
        finally:
            asyncio.run(fleet_devices.remove(settings, fleet.devices))
    ctx.progress(f"mqtt-front: {result.rate:,.0f} readings/s publisher → rows")
    return result


def _front_settings(settings: Settings) -> Settings:
    front = settings.mqtt_front.model_copy(update={"port": free_port(), "health_port": free_port()})
    mqtt = settings.mqtt.model_copy(update={"manage_device_credentials": False})
    return settings.model_copy(update={"mqtt_front": front, "mqtt": mqtt})


def _wait_healthy(settings: Settings, started: Sequence[Started]) -> None:
    url = f"http://127.0.0.1:{settings.mqtt_front.health_port}/health"
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        for process in started:
            process.check_alive()
        with suppress(httpx.TransportError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        time.sleep(0.2)  # polling the front's health, bounded by the deadline
    raise BenchError(f"the MQTT front was not healthy in {READY_S:.0f} s:\n{started[1].tail()}")


def _warm_up(
    ctx: Context, settings: Settings, device_id: str, token: str, started: Sequence[Started]
) -> None:
    """One message of ``device_id`` until its row exists (the front may need a moment to
    learn the device from the registry topic: the publisher retries its CONNECT)."""
    ctx.progress("mqtt-front: warm-up message through front and worker…")
    spec = _spec(settings, [(device_id, token)], messages=1, window=1, limit_s=READY_S)
    (summary,), _ = _publish_all([spec], READY_S)
    if summary.error or summary.acked != 1:
        raise BenchError(f"warm-up publish failed: {summary}")
    stored = wait_run_stored(
        ctx, settings, [device_id], 1, timeout_s=READY_S, watched=started, curated=False,
        partial_ok=False,
    )  # fmt: skip
    asyncio.run(stored)


def _measure(
    ctx: Context,
    settings: Settings,
    devices: list[tuple[str, str]],
    per_device: int,
    window: int,
    started: list[Started],
    time_limit_s: float,
) -> Result:
    worker, front = started
    shares = [devices[n::PUBLISHERS] for n in range(PUBLISHERS)]
    specs = [
        _spec(settings, share, messages=per_device, window=window, limit_s=time_limit_s)
        for share in shares
        if share
    ]
    messages = per_device * len(devices)
    ctx.progress(
        f"mqtt-front: publishing {messages:,} single-reading messages from {len(devices)} "
        f"connections ({len(specs)} processes, ≤ {window} unacked each)…"
    )
    meter = CpuMeter(
        {
            "front": [front.pid],
            "worker": [worker.pid],
            "kafka": [ctx.stack["kafka"]],
            "postgres": [ctx.stack["postgres"]],
        }
    )
    summaries, begun = _publish_all(specs, time_limit_s, meter=meter)
    published_s = time.time() - begun
    acked = sum(s.acked for s in summaries)
    stored = asyncio.run(
        wait_run_stored(
            ctx, settings, [d for d, _ in devices], acked, timeout_s=time_limit_s,
            watched=started,
        )
    )  # fmt: skip
    cpu = meter.stop()
    latencies = [ms for s in summaries for ms in s.latencies_ms]
    errors = [s.error for s in summaries if s.error]
    notes = [
        f"{len(devices)} MQTT 5 connections (one per device) in {len(specs)} publisher "
        f"processes (raw asyncio sockets), QoS 1, 1 reading a message, ≤ {window} unacked per "
        f"connection: {acked:,} of {messages:,} PUBACKed (success) in {published_s:.1f} s "
        f"({acked / published_s:,.0f}/s; publishers' CPU {sum(s.cpu_s for s in summaries):.1f} "
        "s, making their payloads included); latency is PUBLISH written → PUBACK read, of "
        "every message",
        f"1 front, 1 worker, {settings.kafka.partitions} partitions; {stored.rows:,} rows, "
        f"{stored.dead:,} dead letters; rate from GO to the last row, steady from the first row",
    ]
    if errors:
        notes.append("**publisher errors**: " + "; ".join(errors))
    if not stored.complete:
        notes.append(
            f"**incomplete**: {stored.handled:,} of {acked:,} readings stored when the time "
            f"limit ({time_limit_s:.0f} s) ran out; the rate is of those"
        )
    return Result(
        "mqtt-front",
        f"fleetstream MQTT front, {len(devices)} connections, {window} in flight each",
        stored.handled,
        stored.done_at - begun,
        latency=summarize(latencies) if latencies else None,
        steady_rate=stored.handled / max(1e-3, stored.done_at - stored.first_row_at),
        cpu_s=cpu,
        notes=notes,
    )


def _spec(settings: Settings, devices: list[tuple[str, str]], *, messages: int, window: int,
          limit_s: float) -> dict[str, Any]:  # fmt: skip
    front = settings.mqtt_front
    return {
        "host": front.host, "port": front.port, "devices": devices, "messages": messages,
        "window": window, "limit_s": limit_s,
    }  # fmt: skip


def _publish_all(
    specs: list[dict[str, Any]], time_limit_s: float, meter: CpuMeter | None = None
) -> tuple[list[Published], float]:
    """Start a publisher process per spec, wait until all are connected, say GO to all (the
    ``meter`` starts then), collect their summaries; bounded, killed on the way out. The
    summaries, and when GO was said (``time.time()``)."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for spec in specs:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.mqtt_front"],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            _say(proc, json.dumps(spec))
            procs.append(proc)
        for proc in procs:
            line = _read_line(proc, CONNECT_S + 60)
            if line != "READY":
                raise BenchError(f"a publisher did not connect: {line!r} {_stderr(proc)}")
        if meter is not None:
            meter.start()
        go_at = time.time()
        for proc in procs:
            _say(proc, "GO")
        return collect_summaries(procs, time_limit_s), go_at
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# -- the publisher process ---------------------------------------------------------------------


def _text(raw: bytes) -> bytes:
    return struct.pack(">H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    length, size = bytearray(), len(body)
    while True:
        size, byte = divmod(size, 128)
        length.append(byte | (0x80 if size else 0))
        if not size:
            return bytes([first]) + bytes(length) + body


class _Device:
    """One MQTT 5 connection: PUBLISH within the window, PUBACKs timed as they come."""

    def __init__(self, device_id: str, token: str, messages: int, window: int) -> None:
        self.device_id, self.token = device_id, token
        self.payloads = _payloads(device_id, messages, 1)
        self.topic = _text(TOPIC.format(device_id).encode())
        self.window = asyncio.Semaphore(window)
        self.sent_at: dict[int, float] = {}
        self.latencies_ms: list[float] = []
        self.acked = self.refused = 0

    async def connect(self, host: str, port: int) -> None:
        """CONNECT until the front takes it (it may not know the device yet)."""
        deadline = time.monotonic() + CONNECT_S
        while True:
            self.reader, self.writer = await asyncio.open_connection(host, port)
            body = (
                _text(b"MQTT") + bytes([5, 0xC2]) + struct.pack(">H", 60) + b"\x00"
                + _text(self.device_id.encode()) + _text(self.device_id.encode())
                + _text(self.token.encode())
            )  # fmt: skip
            self.writer.write(_packet(0x10, body))
            head = await self.reader.readexactly(2)
            connack = await self.reader.readexactly(head[1])
            if connack[1] == 0:
                return
            self.writer.close()
            if time.monotonic() > deadline:
                raise BenchError(f"CONNACK {connack[1]:#x} for {self.device_id}")
            await asyncio.sleep(0.5)  # pacing the retry; bounded by the deadline

    async def publish(self) -> None:
        acks = asyncio.create_task(self._acks(len(self.payloads)))
        for n, payload in enumerate(self.payloads):
            await self.window.acquire()
            packet_id = n % 65535 + 1
            self.sent_at[packet_id] = time.perf_counter()
            body = self.topic + struct.pack(">H", packet_id) + b"\x00" + payload
            self.writer.write(_packet(0x32, body))
            if n % 64 == 0:
                await self.writer.drain()
        await acks

    async def _acks(self, expected: int) -> None:
        for _ in range(expected):
            head = await self.reader.readexactly(2)
            if head[0] != 0x40:
                raise BenchError(f"expected a PUBACK, got {head.hex()}")
            body = await self.reader.readexactly(head[1])
            now = time.perf_counter()
            packet_id = int.from_bytes(body[:2], "big")
            self.latencies_ms.append((now - self.sent_at.pop(packet_id)) * 1000)
            if len(body) > 2 and body[2] >= 0x80:
                self.refused += 1
            else:
                self.acked += 1
            self.window.release()


async def _publisher(spec: dict[str, Any]) -> None:
    devices = [
        _Device(device_id, token, spec["messages"], spec["window"])
        for device_id, token in spec["devices"]
    ]
    await asyncio.gather(*(d.connect(spec["host"], spec["port"]) for d in devices))
    print("READY", flush=True)
    go = await asyncio.to_thread(sys.stdin.readline)
    if go.strip() != "GO":
        return
    begun = time.monotonic()
    error = None
    try:
        await asyncio.wait_for(asyncio.gather(*(d.publish() for d in devices)), spec["limit_s"])
    except (TimeoutError, OSError, asyncio.IncompleteReadError, BenchError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    summary = {
        "published": sum(len(d.payloads) for d in devices),
        "acked": sum(d.acked for d in devices),
        "refused": sum(d.refused for d in devices),
        "seconds": time.monotonic() - begun,
        "error": error,
        "latencies_ms": [round(ms, 3) for d in devices for ms in d.latencies_ms],
    }
    print(json.dumps(summary), flush=True)


def publisher_main() -> None:
    asyncio.run(_publisher(json.loads(sys.stdin.readline())))


if __name__ == "__main__":
    publisher_main()
