"""Scenario ``mqtt``: paho publishers → Mosquitto → one bridge → Kafka → the worker → rows.

A Mosquitto of the run's own (the stack code, same configuration and dynamic security as
``fleetstream stack up``, on a free port under the scratch folder), fresh topics, and
``CONNECTIONS`` devices registered through the device registry (Postgres, ``fleet.devices.v1``
and their broker passwords, as the admin API does), so the bridge's credential sync keeps them
enabled. One worker and one ``fleetstream mqtt`` start; a warm-up message goes all the way to
a row. Then the bridge is stopped and publisher processes (``PUBLISHERS``, paho, one MQTT 5
connection per device, QoS 1, at most ``INFLIGHT`` unacked per connection) publish everything;
the broker queues it in the bridge's persistent session. A new bridge process starts and the
clock runs from its start until every reading is a row (steady: from the first row).

Why preloaded: paho publishers in Python on the same two cores publish only a few thousand
messages/s (the first version of this benchmark timed them, not the bridge). Draining a
session measures what one bridge sustains, with the worker, Kafka and Postgres beside it; the
publishers' own rate into the broker is reported in the notes. The broker PUBACKs publishers as
soon as it has a message; the bridge PUBACKs the broker only after Kafka acked it.

Every wait is bounded and reports progress: publishers connect within ``CONNECT_S`` and stop at
the time limit; rows are waited for until the time limit (an incomplete run reports the rate of
what was stored, marked incomplete). Everything started is stopped by pid; devices, rows and
topics are deleted.

The publisher half runs as ``python -m bench.mqtt`` with a JSON spec on stdin: it connects,
prints ``READY``, waits for ``GO`` on stdin, publishes, and prints a JSON summary line.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench import fleet_devices, ingest
from bench.context import Context, fresh_topics, wait_run_stored
from bench.cpu import CpuMeter
from bench.data import new_fleet, readings
from bench.procs import BenchError, Started, bench_settings, services, start, stop
from bench.stats import Result
from schemas.settings import Settings
from tests.support import free_port, settings_env

CONNECTIONS = 8
PUBLISHERS = 2
INFLIGHT = 500
CONNECT_S = 20.0
TIME_LIMIT_S = 180.0
READY_S = 90.0
"""Bridge subscribed and credential sync done; then the warm-up row."""
TOPIC = "neurobuild/sensors/{}/data"
EDGE_S = 10


@dataclass(frozen=True)
class Published:
    """One publisher process's summary (the front's publishers time every PUBACK too)."""

    published: int
    acked: int
    refused: int
    seconds: float
    error: str | None
    cpu_s: float
    latencies_ms: list[float] = field(default_factory=list)


def run(
    ctx: Context,
    *,
    count: int = 200_000,
    per_message: int = 1,
    connections: int = CONNECTIONS,
    time_limit_s: float = TIME_LIMIT_S,
) -> Result:
    settings = bench_settings(ctx.base, ctx.workdir)
    fleet = new_fleet(connections + 1)
    warm_up, devices = fleet.devices[0], fleet.devices[1:]
    messages = count // per_message
    count = messages * per_message
    with _broker(settings, ctx) as settings, fresh_topics(settings):
        tokens = asyncio.run(fleet_devices.register(settings, fleet.devices, broker_passwords=True))
        try:
            ctx.progress(f"mqtt: {len(devices)} devices registered; starting a worker and a bridge")
            with services(settings, ctx.workdir, ["worker", "mqtt"]) as started:
                bridge = started[1]
                _wait_ready(ctx, bridge, started)
                _warm_up(ctx, settings, warm_up, tokens[warm_up], started)
                result = _measure(
                    ctx,
                    settings,
                    devices=devices,
                    tokens=tokens,
                    messages=messages,
                    per_message=per_message,
                    started=started,
                    time_limit_s=time_limit_s,
                )
        finally:
            asyncio.run(fleet_devices.remove(settings, fleet.devices, broker_passwords=True))
    ctx.progress(
        f"mqtt: {result.rate:,.0f} readings/s publisher → rows ({per_message} per message)"
    )
    return result


def run_with_edge(ctx: Context, *, count: int, per_message: int) -> list[Result]:
    """The MQTT run, then the HTTP edge with the same readings per request (HTTP → Kafka
    acked, ``bench.ingest``), and the ratio of the two."""
    bridge = run(ctx, count=count, per_message=per_message)
    (edge,) = ingest.run(ctx, batches=(per_message,), seconds=EDGE_S, ceiling=False)
    bridge.notes.append(
        f"ratio to the HTTP edge: {bridge.rate / edge.rate:.2f} (MQTT publisher → rows "
        f"{bridge.rate:,.0f}/s; HTTP, {per_message} reading(s) per request → Kafka acked "
        f"{edge.rate:,.0f}/s, measured right after)"
    )
    return [bridge, edge]


@contextmanager
def _broker(settings: Settings, ctx: Context) -> Iterator[Settings]:
    """A Mosquitto of the run's own (stopped by its pid on exit), and ``settings`` naming it
    with a bridge session and share group of the run."""
    from cli.stack import manager

    unique = uuid.uuid4().hex[:8]
    own = settings.model_copy(
        update={
            "stack": settings.stack.model_copy(update={"home": ctx.workdir / "mqtt-stack"}),
            "mqtt": settings.mqtt.model_copy(
                update={
                    "port": free_port(),
                    "client_id": f"bench-bridge-{unique}",
                    "share_group": f"bench-{unique}",
                    "session_expiry_s": 600,
                    "manage_device_credentials": True,  # devices publish to Mosquitto here
                }
            ),
        }
    )
    manager.up(own, ["mosquitto"], progress=lambda line: ctx.progress(f"mqtt broker: {line}"))
    try:
        yield own
    finally:
        manager.down(own, ["mosquitto"], progress=lambda line: ctx.progress(f"mqtt broker: {line}"))


def _broker_pid(settings: Settings) -> int:
    from cli.stack import manager

    (status,) = manager.status(settings, ["mosquitto"])
    if status.pid is None:
        raise BenchError("the run's Mosquitto is not running")
    return status.pid


def _wait_ready(ctx: Context, bridge: Started, started: Sequence[Started]) -> None:
    deadline = time.monotonic() + READY_S
    while True:
        for process in started:
            process.check_alive()
        text = bridge.log.read_text(errors="replace")
        if "subscribed to" in text and "broker users in step" in text:
            return
        if time.monotonic() > deadline:
            raise BenchError(f"the bridge was not ready in {READY_S:.0f} s:\n{bridge.tail()}")
        time.sleep(0.2)  # polling a log file, bounded by the deadline


def _warm_up(
    ctx: Context, settings: Settings, device_id: str, token: str, started: Sequence[Started]
) -> None:
    """One message of ``device_id`` until its row exists: worker and bridge both work."""
    ctx.progress("mqtt: warm-up message through bridge and worker…")
    spec = _spec(settings, [(device_id, token)], messages=1, per_message=1, limit_s=READY_S)
    summary = _publish_all(ctx, [spec], time_limit_s=READY_S)[0]
    if summary.error or summary.acked != 1:
        raise BenchError(f"warm-up publish failed: {summary}")

    warm = wait_run_stored(
        ctx,
        settings,
        [device_id],
        1,
        timeout_s=READY_S,
        watched=started,
        curated=False,
        partial_ok=False,
    )
    asyncio.run(warm)


def _measure(
    ctx: Context,
    settings: Settings,
    *,
    devices: list[str],
    tokens: dict[str, str],
    messages: int,
    per_message: int,
    started: list[Started],
    time_limit_s: float,
) -> Result:
    """Stop the bridge, publish everything (the broker queues it in the bridge's session),
    start a new bridge and time it from its start until every reading is a row."""
    worker, bridge = started
    shares = [devices[n::PUBLISHERS] for n in range(PUBLISHERS)]
    per_device = messages // len(devices)
    messages = per_device * len(devices)
    specs = [
        _spec(
            settings,
            [(d, tokens[d]) for d in share],
            messages=per_device,
            per_message=per_message,
            limit_s=time_limit_s,
        )
        for share in shares
        if share
    ]
    stop([bridge])
    ctx.progress(
        f"mqtt: bridge stopped; publishing {messages * per_message:,} readings in "
        f"{messages:,} messages from {len(devices)} connections ({len(specs)} processes)…"
    )
    begun = time.time()
    summaries = _publish_all(ctx, specs, time_limit_s=time_limit_s)
    published_s = time.time() - begun
    acked = sum(s.acked for s in summaries)
    errors = [s.error for s in summaries if s.error]
    ctx.progress(
        f"mqtt: the broker PUBACKed {acked:,} of {messages:,} in {published_s:.1f} s"
        f"{'; ' + '; '.join(errors) if errors else ''}; starting the bridge…"
    )
    env = {**settings_env(settings), "FLEET_WORKER__DATADIR": str(ctx.workdir / "faust-mqtt")}
    begun = time.time()
    bridge = start("mqtt-2", [sys.executable, "-m", "cli.main", "mqtt"], ctx.workdir, env)
    started.append(bridge)  # services() stops it with the others
    meter = CpuMeter(
        {
            "bridge": [bridge.pid],
            "worker": [worker.pid],
            "mosquitto": [_broker_pid(settings)],
            "kafka": [ctx.stack["kafka"]],
            "postgres": [ctx.stack["postgres"]],
        }
    )
    meter.start()
    stored = asyncio.run(
        wait_run_stored(
            ctx,
            settings,
            devices,
            acked * per_message,
            timeout_s=time_limit_s,
            watched=[worker, bridge],
        )
    )
    cpu = meter.stop()
    notes = [
        f"{len(devices)} device connections in {len(specs)} paho publisher processes, QoS 1, "
        f"≤ {INFLIGHT} in flight each, {per_message} reading(s) per message, published while "
        f"the bridge was stopped: the broker PUBACKed {acked:,} of {messages:,} messages in "
        f"{published_s:.1f} s ({acked / published_s:,.0f}/s, publishers' CPU "
        f"{sum(s.cpu_s for s in summaries):.1f} s); then one bridge drained its session",
        f"own Mosquitto (stack configuration), 1 bridge, 1 worker, {settings.kafka.partitions} "
        f"partitions; {stored.rows:,} rows, {stored.dead:,} dead letters; rate from starting "
        "the bridge process, steady from the first row",
    ]
    if errors:
        notes.append("**publisher errors**: " + "; ".join(errors))
    if not stored.complete:
        notes.append(
            f"**incomplete**: {stored.handled:,} of {acked * per_message:,} readings stored when "
            f"the time limit ({time_limit_s:.0f} s) ran out; the rate is of those"
        )
    return Result(
        "mqtt",
        f"fleetstream MQTT bridge, {per_message} reading{'s' if per_message > 1 else ''}/message",
        stored.handled,
        stored.done_at - begun,
        steady_rate=stored.handled / max(1e-3, stored.done_at - stored.first_row_at),
        cpu_s=cpu,
        notes=notes,
    )


def _spec(
    settings: Settings,
    devices: list[tuple[str, str]],
    *,
    messages: int,
    per_message: int,
    limit_s: float,
) -> dict[str, Any]:
    return {
        "host": settings.mqtt.host,
        "port": settings.mqtt.port,
        "devices": devices,
        "messages": messages,
        "per_message": per_message,
        "inflight": INFLIGHT,
        "limit_s": limit_s,
    }


def _publish_all(
    ctx: Context, specs: list[dict[str, Any]], *, time_limit_s: float
) -> list[Published]:
    """Start a publisher process per spec, wait until all are connected, say GO to all,
    collect their summaries. Every wait is bounded; the processes are killed on the way out."""
    procs: list[subprocess.Popen[str]] = []
    try:
        for spec in specs:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bench.mqtt"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            _say(proc, json.dumps(spec))
            procs.append(proc)
        for proc in procs:
            line = _read_line(proc, CONNECT_S + 60)  # payloads are made before connecting
            if line != "READY":
                raise BenchError(f"a publisher did not connect: {line!r} {_stderr(proc)}")
        for proc in procs:
            _say(proc, "GO")
        summaries = collect_summaries(procs, time_limit_s)
        return summaries
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _read_line(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The next stdout line of ``proc``, or BenchError after ``timeout_s``."""
    stdout = proc.stdout
    if stdout is None:
        raise BenchError("a publisher without a stdout pipe")
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not box:
        proc.kill()
        raise BenchError(f"a publisher said nothing for {timeout_s:.0f} s: {_stderr(proc)}")
    return box[0].strip()


def _say(proc: subprocess.Popen[str], line: str) -> None:
    if proc.stdin is None:
        raise BenchError("a publisher without a stdin pipe")
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


def _stderr(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None or proc.stderr is None:
        return ""
    return proc.stderr.read()[-2000:]


def _reap(proc: subprocess.Popen[str]) -> float:
    """Wait for ``proc`` (bounded) and return its CPU seconds (user + system)."""
    import os

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pid, _, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = 0
            return float(usage.ru_utime + usage.ru_stime)
        time.sleep(0.05)  # polling our own child's exit, bounded
    proc.kill()
    raise BenchError("a publisher did not exit after its summary")


# -- the publisher process ---------------------------------------------------------------------


def _payloads(device_id: str, messages: int, per_message: int) -> list[bytes]:
    fleet_readings = readings(
        _one_device_fleet(device_id), messages * per_message, invalid_every=None
    )
    bodies = list(fleet_readings)
    if per_message == 1:
        return [json.dumps(body).encode() for body in bodies]
    return [
        json.dumps(bodies[start : start + per_message]).encode()
        for start in range(0, len(bodies), per_message)
    ]


def _one_device_fleet(device_id: str) -> Any:
    from bench.data import Fleet

    return Fleet(run="x", esp32=[device_id], equipment=[])


class _Publisher:
    """The publisher process: one paho MQTT 5 client per device, a shared in-flight window."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.deadline = 0.0
        self.work = [
            (device_id, _payloads(device_id, spec["messages"], spec["per_message"]))
            for device_id, _ in spec["devices"]
        ]
        self.window = threading.BoundedSemaphore(spec["inflight"] * len(self.work))
        self.counts = {"acked": 0, "refused": 0}
        self.lock = threading.Lock()
        self.connected = threading.Semaphore(0)
        self.refusals: list[str] = []
        self.clients: list[Any] = []

    def connect(self) -> bool:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        for device_id, token in self.spec["devices"]:
            client = mqtt.Client(
                CallbackAPIVersion.VERSION2,
                client_id=f"bench-pub-{uuid.uuid4().hex[:8]}",
                protocol=mqtt.MQTTv5,
            )
            client.username_pw_set(device_id, token)
            client.max_inflight_messages_set(self.spec["inflight"])
            client.on_connect = self._on_connect
            client.on_publish = self._on_publish
            client.connect(self.spec["host"], self.spec["port"])
            client.loop_start()
            self.clients.append(client)
        for _ in self.clients:
            if not self.connected.acquire(timeout=CONNECT_S):
                self.refusals.append(f"no CONNACK in {CONNECT_S:.0f} s")
                break
        return not self.refusals

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            self.refusals.append(str(reason))
        self.connected.release()

    def _on_publish(self, _c: Any, _u: Any, _mid: int, reason: Any, _p: Any) -> None:
        with self.lock:
            self.counts["refused" if reason.is_failure else "acked"] += 1
        self.window.release()

    def publish(self) -> tuple[int, str | None]:
        """Round-robin over the connections, one message each, within the window."""
        published = 0
        for n in range(self.spec["messages"]):
            for client, (device_id, payloads) in zip(self.clients, self.work, strict=True):
                if not self.window.acquire(timeout=max(0.0, self.deadline - time.monotonic())):
                    return published, f"time limit ({self.spec['limit_s']:.0f} s) while publishing"
                client.publish(TOPIC.format(device_id), payloads[n], qos=1)
                published += 1
        return published, None

    def wait_acked(self, published: int) -> str | None:
        while time.monotonic() < self.deadline:
            with self.lock:
                if self.counts["acked"] + self.counts["refused"] >= published:
                    return None
            time.sleep(0.01)  # polling our own counters, bounded by the deadline
        return f"time limit ({self.spec['limit_s']:.0f} s) waiting for PUBACKs"

    def close(self) -> None:
        for client in self.clients:
            client.disconnect()
            client.loop_stop()


def publisher_main() -> None:
    """Connect every device, say READY, publish on GO, print the summary (stdout, one line)."""
    publisher = _Publisher(json.loads(sys.stdin.readline()))
    try:
        if not publisher.connect():
            print(f"refused: {publisher.refusals}", flush=True)
            return
        print("READY", flush=True)
        if sys.stdin.readline().strip() != "GO":
            return
        begun = time.monotonic()
        publisher.deadline = begun + float(publisher.spec["limit_s"])
        published, error = publisher.publish()
        error = error or publisher.wait_acked(published)
        summary = {
            "published": published,
            **publisher.counts,
            "seconds": time.monotonic() - begun,
            "error": error,
        }
        print(json.dumps(summary), flush=True)
    finally:
        publisher.close()


if __name__ == "__main__":
    publisher_main()


def collect_summaries(
    procs: Sequence[subprocess.Popen[str]], time_limit_s: float
) -> list[Published]:
    """Each publisher's JSON summary line and the CPU it used, once it is done."""
    summaries = []
    for proc in procs:
        line = _read_line(proc, time_limit_s + 30)
        try:
            data = json.loads(line)
        except ValueError as exc:
            raise BenchError(f"a publisher failed: {line!r} {_stderr(proc)}") from exc
        summaries.append(Published(**data, cpu_s=_reap(proc)))
    return summaries
