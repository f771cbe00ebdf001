"""PUBLISH parsing: the sliced fast path and the property reader agree; topics remembered."""

from __future__ import annotations

import struct

import pytest

from connectors.mqtt.front import packets
from connectors.mqtt.front.ingest import RememberedTopics
from connectors.mqtt.front.packets import ProtocolError
from connectors.mqtt.messages import TopicMatcher


def _body(topic: bytes, packet_id: int | None, props: bytes | None, payload: bytes) -> bytes:
    return (
        struct.pack(">H", len(topic)) + topic
        + (struct.pack(">H", packet_id) if packet_id is not None else b"")
        + (packets.encode_varint(len(props)) + props if props is not None else b"")
        + payload
    )  # fmt: skip


def test_an_mqtt_5_publish_without_properties_is_sliced() -> None:
    body = _body(b"a/dev-1/b", 7, b"", b'{"x":1}')
    assert packets.publish_parts(0x02, body, packets.MQTT_5) == (
        b"a/dev-1/b", b'{"x":1}', 1, 7, None,
    )  # fmt: skip


def test_properties_are_read_past_and_a_topic_alias_is_found() -> None:
    """Catches a fast path that takes property bytes for the payload, or misses an alias."""
    props = packets.property_bytes(0x23, 5, 2) + packets.property_bytes(0x03, "application/json")
    body = _body(b"a/dev-1/b", 7, props, b"{}")
    assert packets.publish_parts(0x02, body, packets.MQTT_5) == (b"a/dev-1/b", b"{}", 1, 7, 5)


def test_mqtt_3_has_no_properties_and_qos_0_no_packet_id() -> None:
    body = _body(b"t", None, None, b"\x00payload")
    assert packets.publish_parts(0x00, body, packets.MQTT_311) == (
        b"t",
        b"\x00payload",
        0,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("flags", "body", "protocol"),
    [
        (0x02, b"\x00", packets.MQTT_5),  # the topic's length cut
        (0x02, b"\x00\x05ab", packets.MQTT_5),  # the topic cut
        (0x02, b"\x00\x01t\x00", packets.MQTT_5),  # the packet id cut
        (0x02, b"\x00\x01t\x00\x00\x00", packets.MQTT_5),  # packet id 0
        (0x02, b"\x00\x01t\x00\x01", packets.MQTT_5),  # no property length
        (0x02, b"\x00\x01t\x00\x01\x05\x23", packets.MQTT_5),  # properties past the end
        (0x06, b"\x00\x01t\x00\x01\x00", packets.MQTT_5),  # QoS 3
    ],
    ids=["length", "topic", "packet-id", "packet-id-0", "no-props", "props-overrun", "qos-3"],
)
def test_malformed_publishes_are_protocol_errors(flags: int, body: bytes, protocol: int) -> None:
    with pytest.raises(ProtocolError):
        packets.publish_parts(flags, body, protocol)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"a\x00b"], ids=["not-utf8", "nul"])
def test_a_topic_must_be_utf8_without_nul(raw: bytes) -> None:
    with pytest.raises(ProtocolError):
        packets.text(raw)


class _Counting(TopicMatcher):
    def __init__(self) -> None:
        super().__init__(["neurobuild/sensors/+/data"])
        self.asked = 0

    def device_id(self, topic: str) -> str | None:
        self.asked += 1
        return super().device_id(topic)


def test_remembered_topics_answer_as_the_matcher_and_ask_it_once_a_topic() -> None:
    """Catches a cache that forgets a topic naming no device (asked again each publish) or
    answers one topic with another's device."""
    matcher = _Counting()
    topics = RememberedTopics(matcher)
    for _ in range(3):
        assert topics.device_id("neurobuild/sensors/dev-1/data") == "dev-1"
        assert topics.device_id("neurobuild/sensors/dev-2/data") == "dev-2"
        assert topics.device_id("elsewhere/dev-1") is None
    assert matcher.asked == 3
