"""The MQTT front's PUBACKs: each only after Kafka acked its reading, in the order the publishes
came, at most the receive maximum waiting; Kafka's refusals; packets however the socket cuts
them. On a connection without a socket, Kafka a future per publish that the test settles."""

from __future__ import annotations

import asyncio
import json
import struct
from collections.abc import Sequence
from typing import cast

import pytest

from connectors.kafka.errors import KafkaUnavailable
from connectors.mqtt.front import packets
from connectors.mqtt.front.connection import Connection
from connectors.mqtt.front.ingest import Ingest
from connectors.mqtt.front.metrics import FrontMetrics
from connectors.mqtt.front.packets import PacketType
from connectors.mqtt.messages import TopicMatcher
from schemas.catalogue import GenericLimits
from tests import clock
from tests.unit.connectors.mqtt.test_front import _connect, _produce, _Registry, _string, _Writer

DISCONNECT = b"\xe0\x00"


class _Kafka:
    """A future per publish, settled by the test."""

    def __init__(self) -> None:
        self.sent: list[asyncio.Future[None]] = []
        self._added = asyncio.Event()

    def add(self, items: Sequence[tuple[str, bytes]]) -> asyncio.Future[None]:
        self.sent.append(asyncio.get_running_loop().create_future())
        self._added.set()
        return self.sent[-1]

    async def holding(self, count: int) -> None:
        while len(self.sent) < count:
            self._added.clear()
            await self._added.wait()

    def ack(self, *indexes: int) -> None:
        for index in indexes:
            self.sent[index].set_result(None)


def _publish(packet_id: int, *, qos: int = 1, v5: bool = True, payload: bytes = b"") -> bytes:
    reading = {"device_id": "dev-1", "sensors": {"pir": {"motion_detected": True}}}
    body = (
        _string(b"neurobuild/sensors/dev-1/data")
        + (struct.pack(">H", packet_id) if qos else b"")
        + (b"\x00" if v5 else b"")
        + (payload or json.dumps(reading).encode())
    )
    return packets.packet(PacketType.PUBLISH, body, flags=qos << 1)


def _connection(
    reader: asyncio.StreamReader, writer: _Writer, kafka: _Kafka, metrics: FrontMetrics
) -> Connection:
    ingest = Ingest(
        registry=_Registry(), matcher=TopicMatcher(["neurobuild/sensors/+/data"]),
        batcher=kafka, produce=_produce, deadletter_topic="dead", max_items=10,
        max_bytes=10_000, limits=GenericLimits(),
    )  # fmt: skip
    return Connection(
        reader, cast(asyncio.StreamWriter, writer), ingest, metrics=metrics, clock=clock.now,
        max_packet_bytes=10_000, receive_maximum=4,
    )  # fmt: skip


def _start(data: bytes, kafka: _Kafka) -> tuple[asyncio.Future[None], _Writer, FrontMetrics]:
    reader, writer, metrics = asyncio.StreamReader(), _Writer(), FrontMetrics()
    reader.feed_data(data)
    serving = asyncio.ensure_future(_connection(reader, writer, kafka, metrics).serve({}))
    return serving, writer, metrics


def _acks(writer: _Writer) -> bytes:
    """What was written after the CONNACK."""
    sent = bytes(writer.sent)
    return sent[2 + sent[1] :]


def _publishes(metrics: FrontMetrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("fleet_mqtt_publishes_total", {"outcome": outcome})
    return value or 0.0


async def _turns(count: int = 5) -> None:
    """Let the loop run what is ready (the front has nothing to wait for but the test)."""
    for _ in range(count):
        await asyncio.sleep(0)


async def test_pubacks_wait_for_kafka_and_keep_the_order_of_the_publishes() -> None:
    """Catches a PUBACK sent before Kafka's ack, and PUBACKs in the order Kafka acked."""
    kafka = _Kafka()
    serving, writer, metrics = _start(_connect() + _publish(1) + _publish(2) + _publish(3), kafka)
    await asyncio.wait_for(kafka.holding(3), 5)
    kafka.ack(2, 1)  # the later ones first
    await _turns()
    assert _acks(writer) == b"", "PUBACKed before Kafka acked the first publish"
    kafka.ack(0)
    await _turns()
    assert _acks(writer) == b"".join(packets.puback(packets.MQTT_5, n) for n in (1, 2, 3))
    assert _publishes(metrics, "accepted") == 3
    serving.cancel()


async def test_no_more_than_the_receive_maximum_is_taken_before_a_puback_makes_room() -> None:
    """Catches a read loop that takes publishes without bound while Kafka holds them."""
    kafka = _Kafka()
    data = _connect() + b"".join(_publish(n) for n in range(1, 7)) + DISCONNECT
    serving, writer, _ = _start(data, kafka)
    await asyncio.wait_for(kafka.holding(4), 5)
    await _turns()
    assert len(kafka.sent) == 4  # receive maximum 4: the fifth waits for room
    kafka.ack(0)
    await asyncio.wait_for(kafka.holding(5), 5)
    await _turns()
    assert len(kafka.sent) == 5
    kafka.ack(1, 2, 3, 4)
    await asyncio.wait_for(kafka.holding(6), 5)
    kafka.ack(5)
    await asyncio.wait_for(serving, 5)
    assert _acks(writer) == b"".join(packets.puback(packets.MQTT_5, n) for n in range(1, 7))


async def test_kafka_refusing_a_reading_gets_mqtt_5_a_puback_0x80_in_its_place() -> None:
    kafka = _Kafka()
    data = _connect() + _publish(1) + _publish(2) + _publish(3) + DISCONNECT
    serving, writer, metrics = _start(data, kafka)
    await asyncio.wait_for(kafka.holding(3), 5)
    kafka.ack(0, 2)
    kafka.sent[1].set_exception(KafkaUnavailable("no leader"))
    await asyncio.wait_for(serving, 5)
    expected = [packets.puback(packets.MQTT_5, 1), packets.puback(packets.MQTT_5, 2, 0x80)]
    assert _acks(writer) == b"".join([*expected, packets.puback(packets.MQTT_5, 3)])
    assert (_publishes(metrics, "accepted"), _publishes(metrics, "kafka-unavailable")) == (2, 1)


async def test_kafka_refusing_a_reading_disconnects_mqtt_3_without_its_puback() -> None:
    """3.1.1 has no negative PUBACK: what came before is PUBACKed, then the connection closes
    so the client sends the refused message again."""
    kafka, reader, metrics = _Kafka(), asyncio.StreamReader(), FrontMetrics()
    writer = _ClosingWriter(reader)
    reader.feed_data(_connect(level=4) + b"".join(_publish(n, v5=False) for n in (1, 2, 3)))
    serving = asyncio.ensure_future(_connection(reader, writer, kafka, metrics).serve({}))
    await asyncio.wait_for(kafka.holding(3), 5)
    kafka.ack(0, 2)
    kafka.sent[1].set_exception(KafkaUnavailable("no leader"))
    await asyncio.wait_for(serving, 5)
    assert _acks(writer) == packets.puback(packets.MQTT_311, 1)
    assert writer.closed


class _ClosingWriter(_Writer):
    """Closing ends the reading too, as a socket's transport does."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        super().__init__()
        self.reader = reader

    def close(self) -> None:
        super().close()
        self.reader.feed_eof()


@pytest.mark.parametrize("cut", [1, 2, 3, 7], ids=lambda n: f"{n}-byte-reads")
async def test_packets_cut_anywhere_by_the_socket_are_read_whole(cut: int) -> None:
    """Catches a reader that expects a packet's header, or the packet, in one read (the
    publishes carry a two-byte remaining length)."""
    kafka = _Kafka()
    reader, writer, metrics = asyncio.StreamReader(), _Writer(), FrontMetrics()
    serving = asyncio.ensure_future(_connection(reader, writer, kafka, metrics).serve({}))
    payload = json.dumps({"device_id": "dev-1", "sensors": {"pir": {"motion_detected": True}},
                          "metadata": {"note": "x" * 200}}).encode()  # fmt: skip
    data = _connect() + _publish(1, payload=payload) + _publish(2, payload=payload) + DISCONNECT
    for at in range(0, len(data), cut):
        reader.feed_data(data[at : at + cut])
        await asyncio.sleep(0)
    await asyncio.wait_for(kafka.holding(2), 5)
    kafka.ack(0, 1)
    await asyncio.wait_for(serving, 5)
    assert _acks(writer) == packets.puback(packets.MQTT_5, 1) + packets.puback(packets.MQTT_5, 2)


async def test_a_publish_over_the_maximum_is_refused_from_its_header() -> None:
    """Catches a reader that waits for an oversized body before refusing it."""
    kafka = _Kafka()
    serving, writer, metrics = _start(_connect() + b"\x32\xff\xff\x01", kafka)  # 32,767 bytes
    await asyncio.wait_for(serving, 1)
    assert _acks(writer) == packets.disconnect(0x95)
    assert writer.closed
    value = metrics.registry.get_sample_value(
        "fleet_mqtt_refusals_total", {"reason": "protocol:0x95"}
    )
    assert value == 1


async def test_qos_0_publishes_are_counted_once_kafka_answered_and_never_pubacked() -> None:
    kafka = _Kafka()
    data = _connect() + _publish(0, qos=0) + _publish(0, qos=0, payload=b"{") + DISCONNECT
    serving, writer, metrics = _start(data, kafka)
    await asyncio.wait_for(kafka.holding(1), 5)
    assert _publishes(metrics, "accepted") == 0
    kafka.ack(0)
    await asyncio.wait_for(serving, 5)
    await _turns()
    assert _acks(writer) == b""
    assert _publishes(metrics, "accepted") == 1
    assert _publishes(metrics, "refused:0x99") == 1  # the dead letter, produced
