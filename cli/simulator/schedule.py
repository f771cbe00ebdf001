"""Each simulated device's behaviour and the times it sends, derived from the plan's seed.

Fleet-wide choices (which devices use MQTT, misbehave, burst, go offline) take exact shares of
the fleet from one ``Random`` seeded by the plan; each device's own numbers (phase, clock skew,
offline window, intervals) come from a ``Random`` seeded by the seed and its index, so device
``i`` behaves the same whatever the size of the fleet it is in.

Times are seconds from the start of the run. A reading is *due* when the device measures it
(its timestamp is the due time plus the device's skew) and *sent* at the same time, or, when
it falls into the device's offline window, when the device comes back.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from cli.simulator.plan import Plan


class Transport(StrEnum):
    HTTP = "http"
    MQTT = "mqtt"


class Misbehaviour(StrEnum):
    MALFORMED = "malformed"
    """Payloads that are not JSON."""
    OUT_OF_RANGE = "out_of_range"
    """Well-formed readings with values outside the sensor's bounds."""
    WRONG_TOKEN = "wrong_token"  # noqa: S105 - a kind of misbehaviour, not a secret
    """Every request or CONNECT carries a token the registry does not know."""


BAD_READING_SHARE = 0.5
"""Share of a malformed or out-of-range device's readings that are bad (the rest are good)."""


@dataclass(frozen=True)
class DeviceProfile:
    index: int
    device_id: str
    transport: Transport
    phase_s: float
    skew_s: float
    misbehaviour: Misbehaviour | None
    offline: tuple[float, float] | None
    bursts: bool


@dataclass(frozen=True)
class Send:
    number: int
    """The reading's number within its device (0, 1, ...)."""
    due_s: float
    send_s: float
    bad: bool


def profiles(plan: Plan) -> list[DeviceProfile]:
    fleet = random.Random(f"{plan.seed}:fleet")  # noqa: S311 - seeded for a reproducible simulation, not for secrets
    count = plan.devices
    mqtt = set(fleet.sample(range(count), plan.mqtt_devices))
    bad = fleet.sample(range(count), round(count * plan.bad_share))
    kinds = {index: list(Misbehaviour)[n % len(Misbehaviour)] for n, index in enumerate(bad)}
    offline = set(fleet.sample(range(count), round(count * plan.offline_share)))
    bursting = set(fleet.sample(range(count), round(count * plan.burst_share)))
    return [
        _profile(plan, index, index in mqtt, kinds.get(index), index in offline, index in bursting)
        for index in range(count)
    ]


def _profile(
    plan: Plan,
    index: int,
    mqtt: bool,
    misbehaviour: Misbehaviour | None,
    offline: bool,
    bursts: bool,
) -> DeviceProfile:
    rng = random.Random(f"{plan.seed}:device:{index}")  # noqa: S311 - seeded for a reproducible simulation, not for secrets
    phase = rng.uniform(0, 1 / plan.rate_per_s)
    skew = rng.uniform(-plan.skew_s, plan.skew_s)
    window = None
    if offline:
        horizon = plan.duration_s if plan.duration_s is not None else 60.0
        start = rng.uniform(0, max(horizon - plan.offline_s, 0) / 2)
        window = (start, start + plan.offline_s)
    return DeviceProfile(
        index=index,
        device_id=plan.device_id(index),
        transport=Transport.MQTT if mqtt else Transport.HTTP,
        phase_s=phase,
        skew_s=skew,
        misbehaviour=misbehaviour,
        offline=window,
        bursts=bursts,
    )


def sends(plan: Plan, profile: DeviceProfile) -> Iterator[Send]:
    """The device's sends in the order it makes them, within the plan's duration and count."""
    rng = random.Random(f"{plan.seed}:sends:{profile.index}")  # noqa: S311 - seeded for a reproducible simulation, not for secrets
    horizon = plan.duration_s if plan.duration_s is not None else math.inf
    cap = plan.device_readings(profile.index)
    for number, due in enumerate(_due_times(plan, profile, rng)):
        if number >= cap or due >= horizon:
            return
        yield Send(number, due, _sent_at(profile, due), _is_bad(profile, rng))


def _due_times(plan: Plan, profile: DeviceProfile, rng: random.Random) -> Iterator[float]:
    interval = 1 / plan.rate_per_s
    due = profile.phase_s
    burst_at = rng.expovariate(1 / plan.burst_every_s) if profile.bursts else math.inf
    while True:
        if burst_at <= due:
            # A burst: burst_size readings measured a millisecond apart.
            for offset in range(plan.burst_size):
                yield burst_at + offset / 1000
            due = max(due, burst_at + plan.burst_size / 1000)  # sends stay in time order
            burst_at += plan.burst_size / 1000 + rng.expovariate(1 / plan.burst_every_s)
            continue
        yield due
        due += interval * rng.uniform(1 - plan.jitter, 1 + plan.jitter)


def _sent_at(profile: DeviceProfile, due: float) -> float:
    if profile.offline is not None and profile.offline[0] <= due < profile.offline[1]:
        return profile.offline[1]
    return due


def _is_bad(profile: DeviceProfile, rng: random.Random) -> bool:
    draw = rng.random()  # drawn for every device, so a bad share never shifts good timings
    if profile.misbehaviour is None:
        return False
    return profile.misbehaviour is Misbehaviour.WRONG_TOKEN or draw < BAD_READING_SHARE
