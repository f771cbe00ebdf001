"""What simulated devices send: tokens, event ids and reading bodies, all derived, none random
from the global generator.

Tokens are an HMAC of the device id under the seed, so a rerun with the same seed knows the
tokens of the devices an earlier run registered (the import answers them as ``existing``).
Anyone who knows the seed knows the tokens: they are for simulated fleets on loopback only.
Event ids are UUIDs derived from the run id, the device and the reading's number, so the
storage check asks Postgres for exactly the readings this run sent.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from cli.simulator.schedule import Misbehaviour

_EVENTS = uuid.UUID("6a1f3c2e-8d4b-4e0a-9c55-0f2b7d1e9a11")
_ENCODER = msgspec.json.Encoder()


def device_token(seed: int, device_id: str) -> str:
    """The token device ``device_id`` is registered with under ``seed`` (64 hex characters)."""
    key = f"fleetstream-simulate:{seed}".encode()
    return hmac.new(key, device_id.encode(), hashlib.sha256).hexdigest()


def wrong_token(seed: int, device_id: str) -> str:
    """A token of the right shape that no device has (misbehaving devices present it)."""
    return device_token(seed, f"wrong:{device_id}")


def event_id(run_id: str, device_id: str, number: int) -> str:
    return str(uuid.uuid5(_EVENTS, f"{run_id}:{device_id}:{number}"))


def timestamp(start: datetime, due_s: float, skew_s: float) -> str:
    """RFC 3339 in UTC with milliseconds: what the device's own (skewed) clock says."""
    moment = start + timedelta(seconds=due_s + skew_s)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def good_reading(device_id: str, event: str, ts: str, rng: random.Random) -> dict[str, Any]:
    """An ESP32 reading (seed 002's shape) with plausible values."""
    presence = rng.random() < 0.3
    return {
        "device_id": device_id,
        "event_id": event,
        "timestamp": ts,
        "sensors": {
            "ld2410": {
                "presence": presence,
                "distance_cm": rng.randint(20, 800) if presence else 0,
                "moving_energy": rng.randint(0, 100),
            },
            "pir": {"motion_detected": presence and rng.random() < 0.8},
            "mq134": {"gas_concentration": round(rng.uniform(0.5, 60.0), 2)},
        },
    }


def reading_bytes(
    device_id: str,
    event: str,
    ts: str,
    rng: random.Random,
    bad: Misbehaviour | None,
) -> bytes:
    """One reading as JSON bytes; a bad one as its misbehaviour makes it (a wrong token is a
    matter of the request, so its body is good)."""
    reading = good_reading(device_id, event, ts, rng)
    if bad is Misbehaviour.OUT_OF_RANGE:
        reading["sensors"]["mq134"]["gas_concentration"] = rng.choice([-5.0, 10_001.0, 1e9])
    body = _ENCODER.encode(reading)
    if bad is Misbehaviour.MALFORMED:
        return body[: rng.randint(1, len(body) - 1)]  # cut short: not JSON any more
    return body


def json_array(items: list[bytes]) -> bytes:
    return b"[" + b",".join(items) + b"]"
