"""CPU per message of one MQTT front connection, in process: 20,000 QoS 1 PUBLISHes of one
reading each through the packet reader, the checks, the edge's decoding and the PUBACKs, with
Kafka (the batcher) stubbed out. ``uv run python -m bench.mqtt_front_path``.

The socket path and Kafka are what ``fleetstream bench mqtt-front`` measures; this isolates the
front's own Python, the part its changes move.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from connectors.mqtt.front.connection import Connection
from connectors.mqtt.front.ingest import Ingest
from connectors.mqtt.front.metrics import FrontMetrics
from connectors.mqtt.messages import TopicMatcher
from schemas.catalogue import GenericLimits
from schemas.devices import Device, hash_token

MESSAGES = 20_000
DEVICE, TOKEN = "bench-front-1", "bench-front-token-0001"
TOPIC = f"neurobuild/sensors/{DEVICE}/data".encode()
AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class _Registry:
    device: Device
    caught_up: bool = True
    devices: dict[str, Device] = field(default_factory=dict)

    def identify(self, token: str) -> Device | None:
        return self.device if hash_token(token) == self.device.token_hash else None

    def get(self, record_id: str) -> Device | None:
        return self.device if record_id == self.device.device_id else None


class _Batcher:
    """Kafka acks every envelope at once; as in the front, the readings read together share
    an envelope (one future) until the next turn of the loop."""

    def __init__(self) -> None:
        self._open: asyncio.Future[None] | None = None

    def add(self, items: Sequence[tuple[str, bytes]]) -> asyncio.Future[None]:
        if self._open is None:
            loop = asyncio.get_running_loop()
            self._open = loop.create_future()
            loop.call_soon(self._ack)
        return self._open

    def _ack(self) -> None:
        if self._open is not None:
            self._open.set_result(None)
            self._open = None


async def _produce(topic: str, records: Sequence[Any]) -> None:
    return None


class _Writer:
    def __init__(self) -> None:
        self.sent = 0

    def write(self, data: bytes) -> None:
        self.sent += len(data)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        return None

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no peer address, no TLS certificate


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(data: bytes) -> bytes:
    return len(data).to_bytes(2, "big") + data


def _connect() -> bytes:
    body = (
        _string(b"MQTT") + bytes([5, 0xC2]) + (30).to_bytes(2, "big") + b"\x00"
        + _string(DEVICE.encode()) + _string(DEVICE.encode()) + _string(TOKEN.encode())
    )  # fmt: skip
    return b"\x10" + _varint(len(body)) + body


def _publish(n: int) -> bytes:
    reading = {
        "device_id": DEVICE,
        "timestamp": AT.isoformat(),
        "sensors": {
            "mq134": {"gas_concentration": 10.0 + n % 50},
            "pir": {"motion_detected": True},
        },
    }
    variable = _string(TOPIC) + (n % 65_000 + 1).to_bytes(2, "big") + b"\x00"
    payload = json.dumps(reading).encode()
    return b"\x32" + _varint(len(variable) + len(payload)) + variable + payload


def _ingest() -> Ingest:
    device = Device(device_id=DEVICE, token_hash=hash_token(TOKEN), created_at=AT, updated_at=AT)
    return Ingest(
        registry=_Registry(device), matcher=TopicMatcher(["neurobuild/sensors/+/data"]),
        batcher=_Batcher(), produce=_produce, deadletter_topic="dead", max_items=10,
        max_bytes=100_000, limits=GenericLimits(),
    )  # fmt: skip


async def _once(data: bytes, messages: int = MESSAGES) -> float:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    writer = _Writer()
    connection = Connection(
        reader, cast(asyncio.StreamWriter, writer), _ingest(), metrics=FrontMetrics(),
        clock=lambda: AT, max_packet_bytes=200_000, receive_maximum=64,
    )  # fmt: skip
    started = time.process_time()
    await connection.serve({})
    spent = time.process_time() - started
    if writer.sent < messages * 4:
        raise RuntimeError("not every PUBLISH was PUBACKed: the figure would be wrong")
    return spent / messages * 1e6


def session(messages: int) -> bytes:
    """CONNECT, ``messages`` QoS 1 PUBLISHes, DISCONNECT."""
    return _connect() + b"".join(_publish(n) for n in range(messages)) + b"\xe0\x00"


def main() -> None:
    data = session(MESSAGES)
    runs = [asyncio.run(_once(data)) for _ in range(5)]
    print(f"MQTT front, one connection, in process: {statistics.median(runs):.1f} µs a message "
          f"(median of {', '.join(f'{r:.1f}' for r in runs)})")  # fmt: skip


if __name__ == "__main__":
    main()
