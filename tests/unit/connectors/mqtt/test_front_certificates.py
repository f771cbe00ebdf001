"""Device client certificates on the MQTT front: the CN stands for the token while the registry
has the device enabled."""

from __future__ import annotations

import msgspec

from connectors.mqtt.front import packets
from connectors.mqtt.front.ingest import (
    BAD_CLIENT_ID,
    BAD_CREDENTIALS,
    NOT_AUTHORIZED,
    Admitted,
    Ingest,
)
from tests.unit.connectors.mqtt.test_front import TOKENS, _ingest


def _connect(
    client_id: str = "", username: str | None = None, token: str | None = None
) -> packets.Connect:
    return packets.Connect(
        protocol=packets.MQTT_5, client_id=client_id, clean_start=True, keepalive_s=30,
        username=username, password=None if token is None else token.encode(),
    )  # fmt: skip


def _device_id() -> str:
    return next(iter(TOKENS))


def _other_id() -> str:
    return list(TOKENS)[1]


def test_a_certified_device_connects_without_a_token() -> None:
    ingest, device_id = _ingest(), _device_id()
    admitted = ingest.admit(_connect(), certified=device_id)
    assert isinstance(admitted, Admitted)
    assert admitted.device is not None and admitted.device.device_id == device_id
    assert admitted.client_id == device_id
    same = ingest.admit(_connect(device_id, device_id, TOKENS[device_id]), certified=device_id)
    assert isinstance(same, Admitted)


def test_a_certificate_never_speaks_for_another_device() -> None:
    ingest, device_id, other = _ingest(), _device_id(), _other_id()
    assert ingest.admit(_connect(username=other), certified=device_id) == BAD_CREDENTIALS
    assert ingest.admit(_connect(token=TOKENS[other]), certified=device_id) == BAD_CREDENTIALS
    assert ingest.admit(_connect(client_id=other), certified=device_id) == BAD_CLIENT_ID
    assert ingest.admit(_connect(), certified="not-registered") == BAD_CREDENTIALS


def test_disabling_the_device_revokes_its_certificate() -> None:
    ingest, device_id = _ingest(), _device_id()
    registry = ingest.registry
    assert isinstance(ingest, Ingest)
    device = registry.get(device_id)
    assert device is not None
    registry.devices[device_id] = msgspec.structs.replace(device, is_enabled=False)  # type: ignore[attr-defined]
    assert ingest.admit(_connect(), certified=device_id) == NOT_AUTHORIZED


def test_without_a_certificate_the_token_is_needed() -> None:
    ingest = _ingest()
    assert ingest.admit(_connect(username=_device_id())) == BAD_CREDENTIALS
