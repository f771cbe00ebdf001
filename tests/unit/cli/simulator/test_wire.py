"""The simulator's MQTT packets, read back by the MQTT front's own parser, and its HTTP answers
read from a stream (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from cli.simulator.http_client import read_answer
from cli.simulator.mqtt_client import (
    Endpoint,
    connect_packet,
    puback_reason,
    publish_packet,
    read_packet,
)
from connectors.mqtt.front.packets import (
    MQTT_5,
    PacketType,
    parse_connect,
    parse_publish,
    puback,
)

ENDPOINT = Endpoint("127.0.0.1", 1883, keepalive_s=60, session_expiry_s=3600)


def _reader(data: bytes) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return reader


async def test_connect_is_mqtt5_with_device_id_as_user_and_client_and_a_session() -> None:
    first, body = await read_packet(_reader(
        connect_packet("sim-1-0000001", "tok" * 10, clean_start=False, endpoint=ENDPOINT)
    ))  # fmt: skip
    assert first >> 4 == PacketType.CONNECT
    connect = parse_connect(body)
    assert connect.protocol == MQTT_5
    assert connect.client_id == connect.username == "sim-1-0000001"
    assert connect.password == b"tok" * 10
    assert not connect.clean_start
    assert (connect.session_expiry_s, connect.keepalive_s) == (3600, 60)
    _, again = await read_packet(_reader(
        connect_packet("d", "p" * 16, clean_start=True, endpoint=ENDPOINT)
    ))  # fmt: skip
    assert parse_connect(again).clean_start


@pytest.mark.parametrize("dup", [False, True])
async def test_publish_is_qos1_with_its_packet_id_and_payload(dup: bool) -> None:
    payload = b'{"device_id": "d"}' * 20  # past 127 bytes: a two-byte remaining length
    first, body = await read_packet(
        _reader(publish_packet("fleet/d/telemetry", 513, payload, dup=dup))
    )
    assert first >> 4 == PacketType.PUBLISH
    publish = parse_publish(first & 0x0F, body, MQTT_5)
    assert (publish.topic, publish.qos, publish.packet_id) == ("fleet/d/telemetry", 1, 513)
    assert publish.payload == payload and publish.dup is dup


async def test_puback_reasons_as_the_front_sends_them() -> None:
    for reason in (0x00, 0x80, 0x99):
        _, body = await read_packet(_reader(puback(MQTT_5, 77, reason)))
        assert puback_reason(body) == (77, reason)


async def test_http_answers_by_length_and_by_chunks() -> None:
    plain = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 2\r\nContent-Length: 5\r\n\r\nslow!"
    answer = await read_answer(_reader(plain + b"HTTP/1.1 202"))
    assert (answer.status, answer.headers["retry-after"], answer.body) == (503, "2", b"slow!")
    chunked = (
        b"HTTP/1.1 202 Accepted\r\ntransfer-encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    answer = await read_answer(_reader(chunked))
    assert (answer.status, answer.body) == (202, b"abcde")
    with pytest.raises(ValueError, match="not an HTTP"):
        await read_answer(_reader(b"SSH-2.0-x\r\n\r\n"))
