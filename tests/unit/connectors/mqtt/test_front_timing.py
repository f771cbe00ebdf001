"""The MQTT front's keep-alive and PUBACK writes, on a connection without a socket.

Keep-alive is about time passing, so these tests take a few seconds of it: a keep-alive of 1 s
gives a client 1.5 s of silence.
"""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Sequence
from typing import cast

from connectors.mqtt.front import packets
from connectors.mqtt.front.connection import KEEP_ALIVE_TIMEOUT, Connection
from connectors.mqtt.front.ingest import Ingest
from connectors.mqtt.front.metrics import FrontMetrics
from connectors.mqtt.front.packets import PacketType
from connectors.mqtt.messages import TopicMatcher
from schemas.catalogue import GenericLimits
from tests import clock
from tests.unit.connectors.mqtt.test_front import _connect, _produce, _Registry, _string, _Writer

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class _HeldBatcher:
    """Kafka that takes nothing until released."""

    def __init__(self) -> None:
        self.held: list[asyncio.Future[None]] = []
        self.released = False
        self._added = asyncio.Event()

    def add(self, items: Sequence[tuple[str, bytes]]) -> asyncio.Future[None]:
        taken = asyncio.get_running_loop().create_future()
        if self.released:
            taken.set_result(None)
        self.held.append(taken)
        self._added.set()
        return taken

    def release(self) -> None:
        self.released = True
        for taken in self.held:
            if not taken.done():
                taken.set_result(None)

    async def holding(self, count: int) -> None:
        """Until ``count`` publishes were handed to Kafka."""
        while len(self.held) < count:
            self._added.clear()
            await self._added.wait()


class _Writes(_Writer):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        super().write(data)


def _publish(packet_id: int) -> bytes:
    reading = {"device_id": "dev-1", "sensors": {"pir": {"motion_detected": True}}}
    body = (
        _string(b"neurobuild/sensors/dev-1/data") + struct.pack(">H", packet_id) + b"\x00"
        + json.dumps(reading).encode()
    )  # fmt: skip
    return packets.packet(PacketType.PUBLISH, body, flags=0x02)


def _connection(reader: asyncio.StreamReader, writer: _Writer, batcher: _HeldBatcher) -> Connection:
    ingest = Ingest(
        registry=_Registry(), matcher=TopicMatcher(["neurobuild/sensors/+/data"]),
        batcher=batcher, produce=_produce, deadletter_topic="dead", max_items=10,
        max_bytes=10_000, limits=GenericLimits(),
    )  # fmt: skip
    return Connection(
        reader, cast(asyncio.StreamWriter, writer), ingest, metrics=FrontMetrics(),
        clock=clock.now, max_packet_bytes=10_000, receive_maximum=4,
    )  # fmt: skip


async def test_a_client_silent_past_one_and_a_half_keep_alives_is_disconnected() -> None:
    reader, writer = asyncio.StreamReader(), _Writer()
    reader.feed_data(_connect(keepalive_s=1))
    await asyncio.wait_for(_connection(reader, writer, _HeldBatcher()).serve({}), 5)
    assert bytes(writer.sent).endswith(packets.disconnect(KEEP_ALIVE_TIMEOUT))
    assert writer.closed


async def test_a_client_that_pings_within_its_keep_alive_stays_past_it() -> None:
    reader, writer = asyncio.StreamReader(), _Writer()
    reader.feed_data(_connect(keepalive_s=1))
    serving = asyncio.ensure_future(_connection(reader, writer, _HeldBatcher()).serve({}))
    for _ in range(5):  # 2.5 s in all, each ping 0.5 s after the last
        await asyncio.sleep(0.5)
        reader.feed_data(PINGREQ)
    reader.feed_data(DISCONNECT)
    await asyncio.wait_for(serving, 5)
    assert bytes(writer.sent).count(packets.PINGRESP) == 5
    assert packets.disconnect(KEEP_ALIVE_TIMEOUT) not in bytes(writer.sent)


async def test_waiting_for_kafka_to_make_room_is_not_silence() -> None:
    reader, writer, batcher = asyncio.StreamReader(), _Writes(), _HeldBatcher()
    # Four PUBACKs may wait (receive maximum 4): the fifth publish waits for room.
    reader.feed_data(_connect(keepalive_s=1) + b"".join(_publish(n) for n in range(1, 7)))
    serving = asyncio.ensure_future(_connection(reader, writer, batcher).serve({}))
    await asyncio.sleep(2.0)  # waiting for room longer than the 1.5 s of silence allowed
    assert not serving.done() and not writer.closed
    batcher.release()
    await asyncio.wait_for(serving, 5)  # then silence: the keep-alive ends it
    sent = bytes(writer.sent)
    assert [sent.count(packets.puback(packets.MQTT_5, n, 0)) for n in range(1, 7)] == [1] * 6
    assert sent.endswith(packets.disconnect(KEEP_ALIVE_TIMEOUT))


async def test_a_connection_closing_with_a_full_queue_pubacks_what_kafka_takes_at_once() -> None:
    reader, writer, batcher = asyncio.StreamReader(), _Writes(), _HeldBatcher()
    reader.feed_data(_connect() + b"".join(_publish(n) for n in range(1, 6)))
    serving = asyncio.ensure_future(_connection(reader, writer, batcher).serve({}))
    await asyncio.wait_for(batcher.holding(4), 5)  # the receive maximum; the fifth waits
    reader.feed_data(DISCONNECT)
    batcher.release()
    await asyncio.wait_for(serving, 2)  # not the 10 s allowed to in-flight PUBACKs
    sent = bytes(writer.sent)
    assert [sent.count(packets.puback(packets.MQTT_5, n, 0)) for n in range(1, 6)] == [1] * 5


async def test_pubacks_ready_together_go_out_in_one_write() -> None:
    reader, writer, batcher = asyncio.StreamReader(), _Writes(), _HeldBatcher()
    reader.feed_data(_connect() + b"".join(_publish(n) for n in range(1, 5)))
    serving = asyncio.ensure_future(_connection(reader, writer, batcher).serve({}))
    await asyncio.wait_for(batcher.holding(4), 5)
    batcher.release()
    reader.feed_data(DISCONNECT)
    await asyncio.wait_for(serving, 5)
    acks = b"".join(packets.puback(packets.MQTT_5, n, 0) for n in range(1, 5))
    assert acks in writer.writes
