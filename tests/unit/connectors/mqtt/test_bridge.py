"""The bridge's shortcuts per message give what the slower originals give: batched PUBACKs are
byte for byte paho's own ``ack()``, event ids of redeliveries the same uuid5 as before."""

from __future__ import annotations

import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from connectors.mqtt.bridge import puback_packets
from schemas.events import IDEMPOTENCY_NAMESPACE, MQTT_NAMESPACE, uuid5_text


def test_batched_pubacks_are_the_bytes_paho_acks_would_send() -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.manual_ack_set(True)
    queued: list[bytes] = []

    def record(command: int, packet: bytes, mid: int, qos: int, info: Any = None) -> int:
        queued.append(bytes(packet))
        return 0

    client._packet_queue = record  # type: ignore[method-assign,assignment]
    mids = [1, 2, 255, 256, 4097, 65535]
    for mid in mids:
        client.ack(mid, 1)
    assert puback_packets(mids) == b"".join(queued)
    assert puback_packets([258]) == bytes([0x40, 0x02, 0x01, 0x02])
    assert puback_packets([]) == b""


def test_event_ids_of_redeliveries_are_the_uuid5_they_always_were() -> None:
    names = [
        "",
        "esp32-01\x00" + "ab" * 32,
        "é" * 300,
        *(f"d{n}\x00{n * 7919}" for n in range(500)),
    ]
    for namespace in (MQTT_NAMESPACE, IDEMPOTENCY_NAMESPACE):
        for name in names:
            assert uuid5_text(namespace, name) == str(uuid.uuid5(uuid.UUID(bytes=namespace), name))
