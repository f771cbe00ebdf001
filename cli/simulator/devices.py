"""The simulated devices at work: each one a task that follows its schedule.

An HTTP device posts its readings one request at a time and waits for each answer, as the
firmware does. An MQTT device publishes each reading as it is due without waiting for the
previous PUBACK (up to the connection's receive maximum), goes offline by disconnecting and
comes back with its session. A device that cannot connect records each reading it could not
send under the CONNACK's reason.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from cli.simulator.http_sender import HttpSender, Outgoing
from cli.simulator.mqtt_client import (
    NO_ANSWER,
    RETRIABLE_CONNACKS,
    SUCCESS,
    MqttClient,
    MqttTimeout,
)
from cli.simulator.payloads import event_id, reading_bytes, timestamp
from cli.simulator.plan import Plan
from cli.simulator.schedule import DeviceProfile, Send, sends
from cli.simulator.tally import Acked, Tally

KAFKA_TROUBLE = 0x80
"""The front's PUBACK when Kafka did not take the reading: publish it again."""


@dataclass
class Fleetwork:
    """What every device task shares."""

    plan: Plan
    run_id: str
    tally: Tally
    http: HttpSender
    topic: Callable[[str], str]
    connects: asyncio.Semaphore
    start_wall: datetime
    start_mono: float = 0.0
    wall: Callable[[], float] = time.time

    async def until(self, at_s: float) -> None:
        delay = self.start_mono + at_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)

    def outgoing(self, profile: DeviceProfile, send: Send, rng: random.Random) -> Outgoing:
        event = event_id(self.run_id, profile.device_id, send.number)
        ts = timestamp(self.start_wall, send.due_s, profile.skew_s)
        kind = profile.misbehaviour if send.bad else None
        return Outgoing(
            profile.device_id, event, reading_bytes(profile.device_id, event, ts, rng, kind),
            send.bad,
        )  # fmt: skip


def value_rng(plan: Plan, profile: DeviceProfile) -> random.Random:
    return random.Random(f"{plan.seed}:values:{profile.index}")  # noqa: S311 - seeded for a reproducible simulation, not for secrets


async def http_device(work: Fleetwork, profile: DeviceProfile, token: str) -> None:
    plan, rng = work.plan, value_rng(work.plan, profile)
    pending: list[Outgoing] = []
    for send in sends(plan, profile):
        await work.until(send.send_s)
        pending.append(work.outgoing(profile, send, rng))
        if len(pending) >= plan.http_batch:
            await work.http.send(token, pending, batch=plan.http_batch > 1)
            pending = []
    if pending:
        await work.http.send(token, pending, batch=plan.http_batch > 1)


async def connect(work: Fleetwork, client: MqttClient, patience_s: float) -> int:
    """Connect through the shared gate, retrying refusals the registry's lag explains."""
    deadline, delay = time.monotonic() + patience_s, 0.25
    while True:
        async with work.connects:
            reason = await client.connect()
        retriable = reason == NO_ANSWER or reason in RETRIABLE_CONNACKS
        if reason == SUCCESS or not retriable or time.monotonic() + delay > deadline:
            return reason
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def mqtt_device(work: Fleetwork, profile: DeviceProfile, client: MqttClient) -> None:
    plan, rng = work.plan, value_rng(work.plan, profile)
    topic = work.topic(profile.device_id)
    publishing: list[asyncio.Task[None]] = []
    went_offline = False
    for send in sends(plan, profile):
        if profile.offline and not went_offline and send.send_s >= profile.offline[0]:
            went_offline = True
            await work.until(profile.offline[0])
            await client.disconnect()
            await work.until(profile.offline[1])
            await connect(work, client, patience_s=0)
        await work.until(send.send_s)
        out = work.outgoing(profile, send, rng)
        if not client.session_open:
            reason = await connect(work, client, patience_s=0)
            if reason != SUCCESS:
                _refused(work.tally, out, reason)
                continue
        publishing.append(asyncio.create_task(publish(work, client, topic, out)))
    await asyncio.gather(*publishing)
    await client.disconnect()


def _refused(tally: Tally, out: Outgoing, reason: int) -> None:
    tally.sending(1, int(out.bad))
    tally.error("connect failed" if reason == NO_ANSWER else f"connack 0x{reason:02x}")
    tally.fail(1)


async def publish(work: Fleetwork, client: MqttClient, topic: str, out: Outgoing) -> None:
    """One reading over QoS 1, published again (same event id) after a Kafka-trouble PUBACK."""
    tally = work.tally
    tally.sending(1, int(out.bad))
    for attempt in range(work.plan.retries + 1):
        sent_at, started = work.wall(), time.monotonic()
        try:
            reason = await client.publish(topic, out.body, work.plan.request_timeout_s)
        except MqttTimeout:
            tally.error("timeout")
            break
        if reason < 0x80:
            elapsed = time.monotonic() - started
            tally.ack([Acked(out.device_id, out.event_id, sent_at, elapsed)], int(out.bad))
            return
        tally.error(f"puback 0x{reason:02x}")
        if reason != KAFKA_TROUBLE or attempt == work.plan.retries:
            break
        await asyncio.sleep(1.0)
    tally.fail(1)
