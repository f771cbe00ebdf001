"""A hostile fleet and failing services: no accepted reading is lost or stored twice.

``fleetstream run`` (API, worker and MQTT front, supervised) serves well-behaved
devices posting over HTTP and publishing known readings through the MQTT front, while hostile
devices send generated bad input (random JSON in and out of the schema, extreme numbers,
thousands of field names, event ids of other devices, oversized and truncated bodies, malformed
MQTT payloads), a prober sends the MQTT front malformed packets over raw sockets and CONNECTs
that claim other identities, and a chaos actor kills the worker and stops and restarts Redis,
Postgres and the Kafka broker while another kills the front (``kill -9``; ``run`` restarts it).
It passes only if every reading a well-behaved device got a 2xx or PUBACK for is stored exactly
once, nobody got a 500, each probe got its answer and was counted in the front's refusals, no
well-behaved device lost its session to a clash, the MQTT devices went on publishing after the
last restart of the front, the API and a worker are serving at the end, and their memory stayed
under ``MEMORY_BOUND_MB``. ``FLEET_SOAK_S`` sets how long traffic and chaos run (``make soak``:
900).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from cli.stack import manager
from connectors.postgres.pool import connect
from schemas.settings import MqttSettings, Settings
from tests import clock
from tests.factories import device_ids, reading
from tests.integration.fleet import Fleet
from tests.integration.mqtt_tools import (
    MALFORMED_AFTER_CONNECT,
    SEED_TOPIC,
    SESSION_TAKEN_OVER,
    STALLED,
    FrontDevice,
    Probe,
    clash_probes,
    exchange,
    front_healthy,
    front_refusals,
    malformed_probes,
)
from tests.integration.test_run_command import (
    alive,
    api_ready,
    children_of,
    run_settings,
    start_run,
)
from tests.support import wait_until

SOAK_S = float(os.environ.get("FLEET_SOAK_S", "60"))
PACE_S = 0.1
"""Between two sends of one well-behaved device: a fleet's rate, not a flood."""
SEED = int(os.environ.get("FLEET_SOAK_SEED", "20261207"))
GOOD_HTTP, GOOD_MQTT, HOSTILE = 12, 4, 4
MEMORY_BOUND_MB = {"api": 300, "worker": 600, "mqtt-front": 250}
"""Resident memory of each child of ``fleetstream run`` at the end, in MiB."""
FRONT_KILLS = max(2, int(SOAK_S // 30))
PROBE_PACE_S = 0.2
"""Between two probes of the front: each is a connection and two reads of its metrics."""
PROBE_S = 40.0
"""How long a probe waits for the front to answer and close (its CONNECT deadline is 10 s)."""


@dataclass
class Ledger:
    """What the devices were told."""

    accepted: dict[tuple[str, str], int] = field(default_factory=dict)
    """(device, event id) → how often a 2xx or PUBACK said it was taken."""
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    pubacked_at: dict[str, list[float]] = field(default_factory=dict)
    """MQTT device → when (monotonic) it got each PUBACK saying success."""
    taken_over: list[str] = field(default_factory=list)
    """Well-behaved MQTT devices disconnected because another connection took their session."""

    def took(self, device_id: str, event_ids: list[str]) -> None:
        for event_id in event_ids:
            key = (device_id, event_id)
            self.accepted[key] = self.accepted.get(key, 0) + 1


def _good_body(device_id: str, n: int) -> dict[str, Any]:
    at = clock.now().replace(microsecond=0)
    return reading(device_id, n) | {"timestamp": at.isoformat(), "event_id": str(uuid.uuid4())}


async def _post_good(client: httpx.AsyncClient, fleet: Fleet, device_id: str, ledger: Ledger,
                     stop: asyncio.Event) -> None:  # fmt: skip
    n = 0
    while not stop.is_set():
        body = [_good_body(device_id, n + k) for k in range(3)]
        n += 3
        for _attempt in range(20):  # the same body again after a 503: ids make it idempotent
            try:
                answer = await client.post(
                    "/v1/readings", json=body, headers=fleet.headers(device_id)
                )
            except httpx.TransportError:
                await asyncio.sleep(0.5)  # pacing a retry, not waiting for a condition
                continue
            ledger.statuses[answer.status_code] += 1
            if answer.status_code >= 500 and answer.status_code != 503:
                ledger.server_errors.append(f"{answer.status_code} {answer.text[:200]}")
            if answer.status_code == 202:
                ledger.took(device_id, [item["event_id"] for item in body])
                await asyncio.sleep(PACE_S)
                break
            await asyncio.sleep(float(answer.headers.get("retry-after", "1")))


def _publish_good(settings: Settings, device_id: str, token: str, ledger: Ledger,
                  stop: threading.Event) -> None:  # fmt: skip
    device = FrontDevice(settings, device_id, token)
    device.connect()
    try:
        n = 0
        while not stop.is_set():
            body = _good_body(device_id, n)
            n += 1
            reason = device.publish(SEED_TOPIC.format(device_id), json.dumps(body).encode())
            if reason is not None and reason == 0:  # PUBACK success: Kafka has it
                ledger.took(device_id, [body["event_id"]])
                ledger.pubacked_at.setdefault(device_id, []).append(time.monotonic())
            stop.wait(PACE_S)
    finally:
        device.close()
        if any(reason.value == SESSION_TAKEN_OVER for reason in device.disconnects):
            ledger.taken_over.append(device_id)


def _hostile_bodies(rng: random.Random, device_id: str, ledger: Ledger) -> list[bytes]:
    """One round of bad input: each kind once, in a random order."""
    stolen = rng.choice(list(ledger.accepted)) if ledger.accepted else ("x", str(uuid.uuid4()))
    base = _good_body(device_id, rng.randrange(10_000))
    fields = {f"f{n}_{'x' * rng.randrange(200)}": rng.random() for n in range(3000)}
    bodies = [
        json.dumps(_random_json(rng, 5)).encode(),
        json.dumps(base | {"sensors": {"equipment": {"power_kw": 1.7e308}}}).encode(),
        json.dumps(base | {"sensors": {"mq134": {"gas_concentration": -1e308}}}).encode(),
        json.dumps(base | {"sensors": {"pir": {"motion_detected": 10**400}}}).encode(),
        json.dumps(base | {"sensors": {"weird": fields}}).encode(),
        json.dumps(base | {"event_id": stolen[1], "timestamp": base["timestamp"]}).encode(),
        json.dumps(base)[: rng.randrange(1, 40)].encode(),
        b"[" * 5000 + b"]" * 5000,
        b'{"device_id": "' + b"A" * 2_000_000 + b'"}',
    ]
    rng.shuffle(bodies)
    return bodies


def _random_json(rng: random.Random, depth: int) -> Any:
    kind = rng.randrange(7 if depth > 0 else 5)
    leaves: list[Callable[[], Any]] = [
        lambda: rng.choice([None, True, False]),
        lambda: rng.choice([0, -1, 2**63, -(2**63), 1e308, -1e-308, 3.5]),
        lambda: "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(20))),
        lambda: rng.choice(["device_id", "sensors", "timestamp", "2026-13-45T25:61:00Z"]),
        lambda: str(uuid.uuid4()),
    ]
    if kind < 5:
        return leaves[kind]()
    if kind == 5:
        return [_random_json(rng, depth - 1) for _ in range(rng.randrange(4))]
    keys = ["device_id", "sensors", "timestamp", "event_id", "ld2410", "x"]
    return {rng.choice(keys): _random_json(rng, depth - 1) for _ in range(rng.randrange(5))}


async def _hostile(client: httpx.AsyncClient, fleet: Fleet, device_id: str, ledger: Ledger,
                   stop: asyncio.Event, rng: random.Random) -> None:  # fmt: skip
    headers = fleet.headers(device_id) | {"content-type": "application/json"}
    while not stop.is_set():
        for body in _hostile_bodies(rng, device_id, ledger):
            try:
                answer = await client.post("/v1/readings", content=body, headers=headers)
            except httpx.TransportError:
                continue  # e.g. an oversized body cut off by the server's 413
            ledger.statuses[answer.status_code] += 1
            if answer.status_code >= 500 and answer.status_code != 503:
                ledger.server_errors.append(f"hostile {answer.status_code} {answer.text[:200]}")


def _publish_garbage(settings: Settings, device_id: str, token: str, rng: random.Random,
                     stop: threading.Event) -> None:  # fmt: skip
    device = FrontDevice(settings, device_id, token)
    device.connect()
    try:
        while not stop.is_set():
            size = rng.choice([0, 1, 100, 100_000])
            device.publish(SEED_TOPIC.format(device_id), rng.randbytes(size))
            stop.wait(PACE_S)
    finally:
        device.close()


@dataclass
class Probing:
    """What the probes of the front came to (only those the same front process saw through)."""

    passed: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    interrupted: int = 0
    """Probes a restart of the front cut short (not judged)."""


async def _probe_front(settings: Settings, run_pid: int, probes: list[Probe], results: Probing,
                       stop: asyncio.Event) -> None:  # fmt: skip
    """Send the probes at once, round after round, until ``stop``."""
    async with httpx.AsyncClient(timeout=30) as client:
        while not stop.is_set():
            await _probe_round(client, settings, run_pid, probes, results)
            await asyncio.sleep(PROBE_PACE_S)  # pacing the prober, not waiting for a condition


async def _probe_round(client: httpx.AsyncClient, settings: Settings, run_pid: int,
                       probes: list[Probe], results: Probing) -> None:  # fmt: skip
    """One round on a front that is up, judged by each probe's answer and by the front's
    refusal counts, unless the front was restarted meanwhile."""
    await wait_until(lambda: front_healthy(client, settings), timeout_s=120, what="the front up")
    pid = _children(run_pid).get("mqtt-front")
    port = settings.mqtt_front.port
    try:
        before = await front_refusals(client, settings)
        answers = await asyncio.gather(
            *(exchange(port, p.data, connect=p.connect, within_s=PROBE_S) for p in probes),
            return_exceptions=True,
        )
        after = await front_refusals(client, settings)
    except httpx.TransportError:
        after = before = Counter()
        answers = [None] * len(probes)
    if pid is None or _children(run_pid).get("mqtt-front") != pid:
        results.interrupted += 1
        return
    for reason, count in Counter(probe.refusal for probe in probes).items():
        if after[reason] - before[reason] != count:
            results.wrong.append(f"{reason}: +{after[reason] - before[reason]} for {count}")
    for probe, answer in zip(probes, answers, strict=True):
        if answer == probe.answer:
            results.passed[probe.name] += 1
        else:
            shown = repr(answer) if not isinstance(answer, bytes) else answer.hex() or "nothing"
            results.wrong.append(f"{probe.name}: answer {shown}")


async def _kill_front(run_pid: int, settings: Settings, stop: asyncio.Event, rng: random.Random,
                      kills: list[float]) -> None:  # fmt: skip
    """``kill -9`` the MQTT front ``FRONT_KILLS`` times, spread over the load, each time once
    it serves again (``fleetstream run`` restarts it)."""
    began = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(FRONT_KILLS):
            at = began + SOAK_S * (n + 1 + rng.uniform(-0.3, 0.3)) / (FRONT_KILLS + 2)
            await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=at - time.monotonic())
            if stop.is_set():
                return
            await wait_until(lambda: front_healthy(client, settings), timeout_s=120, what="front")
            front = _children(run_pid).get("mqtt-front")
            if front is not None and not stop.is_set():
                os.kill(front, signal.SIGKILL)
                kills.append(time.monotonic())


async def _chaos(run_pid: int, settings: Settings, stop: asyncio.Event, log: Path) -> list[str]:
    """Kill the worker, then stop and start Redis, Postgres and Kafka, one at a time."""
    done: list[str] = []
    pause = SOAK_S / 6

    async def between() -> None:
        await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=pause)

    steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("kill -9 worker", lambda: _kill_worker(run_pid)),
        ("redis", lambda: _bounce(settings, "redis")),
        ("postgres", lambda: _bounce(settings, "postgres")),
        ("kafka", lambda: _bounce(settings, "kafka")),
    ]
    while not stop.is_set():
        for name, step in steps:
            await between()
            if stop.is_set():
                return done
            await step()
            done.append(name)
    return done


async def _kill_worker(run_pid: int) -> None:
    worker = _children(run_pid).get("worker")
    if worker is not None:
        os.kill(worker, signal.SIGKILL)


async def _bounce(settings: Settings, service: str) -> None:
    await asyncio.to_thread(manager.down, settings, [service], progress=print)
    await asyncio.sleep(3)  # the outage itself: how long the service stays away
    await asyncio.to_thread(manager.up, settings, [service], progress=print)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.disruptive
async def test_a_hostile_fleet_and_failing_services_lose_no_accepted_reading(
    pipeline: Settings, stack_settings: Settings, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    good_http, good_mqtt = device_ids(GOOD_HTTP), device_ids(GOOD_MQTT, prefix="mqtt")
    hostile = device_ids(HOSTILE, prefix="evil")
    probers = device_ids(MALFORMED_AFTER_CONNECT, prefix="probe")
    (system_named,) = device_ids(1, prefix="fleetstream")  # an id the system keeps for itself
    settings = await _own_system(pipeline)
    log = tmp_path / "run.log"
    proc = start_run(settings, log)
    ledger, stop, stop_threads = Ledger(), asyncio.Event(), threading.Event()
    stop_mqtt = asyncio.Event()
    probing, kills = Probing(), list[float]()
    base = f"http://127.0.0.1:{settings.api.port}"
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await wait_until(lambda: api_ready(client), timeout_s=180, what=lambda: _tail(log))
            fleet = Fleet(client)
            await fleet.enroll([*good_http, *good_mqtt, *hostile, *probers, system_named])
            probes = _probes(settings, fleet, probers, hostile[1], good_mqtt, system_named)
            await _wait_serving(client, fleet, good_http[0], ledger, log)
            tasks = [
                *(_post_good(client, fleet, d, ledger, stop) for d in good_http),
                *(_hostile(client, fleet, d, ledger, stop, random.Random(rng.random()))
                  for d in hostile),
                *(asyncio.to_thread(_publish_good, settings, d, fleet.tokens[d], ledger,
                                    stop_threads) for d in good_mqtt),
                asyncio.to_thread(_publish_garbage, settings, hostile[0],
                                  fleet.tokens[hostile[0]], random.Random(rng.random()),
                                  stop_threads),
                _probe_front(settings, proc.pid, probes, probing, stop_mqtt),
                _probe_front(settings, proc.pid, [STALLED], probing, stop_mqtt),
                _kill_front(proc.pid, settings, stop, random.Random(rng.random()), kills),
            ]  # fmt: skip
            running = [asyncio.ensure_future(task) for task in tasks]
            chaos = asyncio.ensure_future(_chaos(proc.pid, stack_settings, stop, log))
            await asyncio.wait([asyncio.ensure_future(stop.wait())], timeout=SOAK_S)
            stop.set()
            done = await chaos
            await _mqtt_settled(ledger, probing, [*probes, STALLED], kills, good_mqtt, log)
            stop_mqtt.set()
            stop_threads.set()
            await asyncio.gather(*running)
            await asyncio.to_thread(manager.up, stack_settings, None, progress=print)
            await _wait_serving(client, fleet, good_http[0], ledger, log)
            memory = {name: _rss_mb(pid) for name, pid in _children(proc.pid).items()}
        assert ledger.server_errors == [], ledger.server_errors[:5]
        assert done, "the chaos actor did nothing"
        _front_held(probing, kills, ledger, log)
        db = await connect(settings.postgres)
        try:
            await _every_accepted_stored_once(db, ledger, [*good_http, *good_mqtt], log)
        finally:
            await db.close()
        for name, megabytes in memory.items():
            assert megabytes < MEMORY_BOUND_MB[name], (name, megabytes)
        print(f"chaos: {done}; answers: {dict(ledger.statuses)}; "
              f"accepted: {len(ledger.accepted)}; memory MiB: {memory}; front killed "
              f"{len(kills)} times; probes passed {sum(probing.passed.values())}, "
              f"cut short by a restart {probing.interrupted}")  # fmt: skip
    finally:
        stop.set()
        stop_mqtt.set()
        stop_threads.set()
        await asyncio.to_thread(manager.up, stack_settings, None, progress=print)
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 60)
        for pid in children_of(proc.pid):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        await _drop_database(stack_settings, settings.postgres.database)


def _probes(settings: Settings, fleet: Fleet, probers: list[str], clasher: str,
            good_mqtt: list[str], system_named: str) -> list[Probe]:  # fmt: skip
    """Malformed packets from the probers, clashing CONNECTs from a hostile device (with the
    connected well-behaved MQTT devices as victims)."""
    system_ids = [MqttSettings().client_id, f"fleetstream-mqtt-front-{settings.mqtt_front.port}"]
    return [
        *malformed_probes([(d, fleet.tokens[d]) for d in probers]),
        *clash_probes(clasher, fleet.tokens[clasher], good_mqtt[:2], system_ids,
                      (system_named, fleet.tokens[system_named])),
    ]  # fmt: skip


async def _mqtt_settled(ledger: Ledger, probing: Probing, probes: list[Probe], kills: list[float],
                        good_mqtt: list[str], log: Path) -> None:  # fmt: skip
    """Until every MQTT device was PUBACKed after the last kill of the front and every probe
    was judged on a front that stayed up (MQTT load and probes go on meanwhile), or a probe
    got a wrong answer (``_front_held`` then says which)."""

    def missing() -> list[str]:
        last = kills[-1] if kills else 0.0
        late = [d for d in good_mqtt if not any(t > last for t in ledger.pubacked_at.get(d, []))]
        return late + sorted({probe.name for probe in probes} - set(probing.passed))

    async def settled() -> bool:
        return not missing() or bool(probing.wrong)

    await wait_until(settled, timeout_s=120, what=lambda: f"{missing()}\n{_tail(log)}")


def _front_held(probing: Probing, kills: list[float], ledger: Ledger, log: Path) -> None:
    """Every probe answered and counted (``_mqtt_settled`` saw each judged); no session taken
    over; the front died only by our kills."""
    assert probing.wrong == [], probing.wrong[:10]
    assert ledger.taken_over == [], f"sessions taken over: {ledger.taken_over}"
    assert len(kills) == FRONT_KILLS, kills
    exits = [line for line in log.read_text().splitlines() if "mqtt-front exited (" in line]
    assert len(exits) == len(kills) and all("(-9)" in line for line in exits), exits


async def _own_system(pipeline: Settings) -> Settings:
    """``fleetstream run``'s settings: the pipeline's topics, a database of its own (``run``
    resyncs the registries from its database: the shared test database holds every other
    test's flows), ports of its own for the API and the MQTT front."""
    name = f"hostile_{uuid.uuid4().hex[:10]}"
    admin = await connect(pipeline.postgres)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    settings = run_settings(pipeline)
    return settings.model_copy(
        update={
            "postgres": settings.postgres.model_copy(update={"database": name}),
            # devices publish to the MQTT front, which needs no broker users
            "mqtt": settings.mqtt.model_copy(update={"manage_device_credentials": False}),
        }
    )


async def _drop_database(stack_settings: Settings, name: str) -> None:
    admin = await connect(stack_settings.postgres)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


def _children(run_pid: int) -> dict[str, int]:
    found = {}
    for pid in children_of(run_pid):
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        if len(args) > 3 and args[1:3] == ["-m", "cli.main"] and args[3] in MEMORY_BOUND_MB:
            found[args[3]] = pid
    return found


async def _wait_serving(
    client: httpx.AsyncClient, fleet: Fleet, device_id: str, ledger: Ledger, log: Path
) -> None:
    """Until the API is ready and takes a new reading (which must then be stored like any)."""
    body = _good_body(device_id, 999_999)

    async def stored() -> bool:
        try:
            answer = await client.post("/v1/readings", json=body, headers=fleet.headers(device_id))
        except httpx.TransportError:
            return False
        if answer.status_code != 202:
            return False
        ledger.took(device_id, [body["event_id"]])
        ready = await client.get("/health/ready")
        return ready.status_code == 200

    await wait_until(stored, timeout_s=180, what=lambda: log.read_text()[-3000:])


async def _every_accepted_stored_once(
    db: asyncpg.Connection, ledger: Ledger, devices: list[str], log: Path
) -> None:
    wanted = set(ledger.accepted)
    missing: list[tuple[str, str]] = []

    def described() -> str:
        kinds = Counter(device.split("-")[0] for device, _ in missing)
        return (
            f"{len(missing)} of {len(wanted)} accepted missing {dict(kinds)}\n"
            + (log.read_text()[-3000:])
        )

    async def all_there() -> bool:
        rows = await db.fetch(
            "SELECT device_id, event_id::text AS id, count(*) AS n FROM readings "
            "WHERE device_id = ANY($1) GROUP BY 1, 2",
            devices,
        )
        stored = {(row["device_id"], row["id"]): row["n"] for row in rows}
        assert all(n == 1 for n in stored.values()), "a reading stored twice"
        missing[:] = sorted(wanted - set(stored))
        return not missing

    await wait_until(all_there, timeout_s=120, what=described)
