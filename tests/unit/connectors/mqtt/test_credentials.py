"""Device credentials in the broker: the registry hands over the plain token exactly when it
exists, and the dynamic-security commands give the device its own topics only."""

from __future__ import annotations

import pytest

from connectors.mqtt.credentials import (
    BrokerCredentials,
    device_credentials,
    device_topics,
    role_for,
    token_commands,
)
from connectors.mqtt.errors import BrokerUnavailable
from connectors.registry import (
    CredentialsNotSet,
    DeviceRegistry,
    HashedToken,
    ImportNotPublished,
    NotPublished,
)
from schemas.devices import Device, DeviceChanges, NewDevice, hash_token
from schemas.settings import Settings
from tests import clock
from tests.unit.registry_fakes import MemoryPublisher, MemoryStore

PATTERNS = ["neurobuild/sensors/+/data", "fleet/+/telemetry"]


class RecordingCredentials:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.fail = fail

    async def set_token(self, device: Device, token: str) -> None:
        self.calls.append((device.device_id, token, device.token_hash))
        if self.fail:
            raise BrokerUnavailable("broker away")


async def test_create_and_rotate_hand_the_plain_token_to_the_broker() -> None:
    credentials = RecordingCredentials()
    registry = DeviceRegistry(MemoryStore(), MemoryPublisher(), credentials)
    device, token = await registry.create(NewDevice(device_id="esp32-a"))
    rotated, new_token = await registry.rotate_token("esp32-a")
    assert credentials.calls == [
        ("esp32-a", token, hash_token(token)),
        ("esp32-a", new_token, hash_token(new_token)),
    ]
    assert device.token_hash == hash_token(token) and rotated.token_hash == hash_token(new_token)


async def test_updates_never_touch_the_password() -> None:
    credentials = RecordingCredentials()
    registry = DeviceRegistry(MemoryStore(), MemoryPublisher(), credentials)
    await registry.create(NewDevice(device_id="esp32-a"))
    await registry.update("esp32-a", DeviceChanges(is_enabled=False))
    await registry.delete("esp32-a")
    assert len(credentials.calls) == 1


async def test_a_broker_that_does_not_take_the_token_is_a_retriable_503_error() -> None:
    store = MemoryStore()
    registry = DeviceRegistry(store, MemoryPublisher(), RecordingCredentials(fail=True))
    with pytest.raises(CredentialsNotSet, match="rotate the token") as caught:
        await registry.create(NewDevice(device_id="esp32-a"))
    assert isinstance(caught.value, NotPublished)  # the admin API answers 503
    assert "esp32-a" in store.rows  # stored and published all the same


async def test_a_bulk_import_gives_the_broker_each_created_devices_token_only() -> None:
    credentials = RecordingCredentials()
    registry = DeviceRegistry(MemoryStore(), MemoryPublisher(), credentials)
    await registry.create(NewDevice(device_id="esp32-old"))
    credentials.calls.clear()
    result = await registry.create_many(
        [(NewDevice(device_id="esp32-old"), None), (NewDevice(device_id="esp32-b"), None)]
    )
    assert result.existing == ["esp32-old"]
    ((device_id, token),) = result.created
    assert token is not None
    assert credentials.calls == [(device_id, token, hash_token(token))]


async def test_a_bulk_import_the_broker_refuses_is_503_keeping_the_tokens() -> None:
    store = MemoryStore()
    registry = DeviceRegistry(store, MemoryPublisher(), RecordingCredentials(fail=True))
    with pytest.raises(ImportNotPublished) as caught:
        await registry.create_many([(NewDevice(device_id="esp32-a"), None)])
    ((device_id, token),) = caught.value.result.created
    assert token is not None
    assert store.rows[device_id].token_hash == hash_token(token)


def _device(device_id: str, enabled: bool = True) -> Device:
    now = clock.now()
    return Device(
        device_id=device_id,
        token_hash=hash_token("t" * 20),
        is_enabled=enabled,
        created_at=now,
        updated_at=now,
    )


def test_a_device_may_publish_to_its_own_topics_only() -> None:
    assert device_topics("esp32-a", PATTERNS) == [
        "neurobuild/sensors/esp32-a/data",
        "fleet/esp32-a/telemetry",
    ]
    commands = token_commands(_device("esp32-a"), "secret-token-123", PATTERNS)
    acls = [c for c in commands if c["command"] == "addRoleACL"]
    assert {(c["rolename"], c["acltype"], c["topic"], c["allow"]) for c in acls} == {
        (role_for("esp32-a"), "publishClientSend", "neurobuild/sensors/esp32-a/data", True),
        (role_for("esp32-a"), "publishClientSend", "fleet/esp32-a/telemetry", True),
    }
    client = [c for c in commands if c["command"] in ("createClient", "modifyClient")]
    assert [c["command"] for c in client] == ["createClient", "modifyClient"]
    for command in client:
        assert command["username"] == "esp32-a"
        assert command["password"] == "secret-token-123"  # noqa: S105 - a test token
        assert command["textdescription"] == hash_token("t" * 20)
        assert command["roles"] == [{"rolename": role_for("esp32-a")}]
    assert commands[-1] == {"command": "enableClient", "username": "esp32-a"}


def test_a_disabled_device_gets_its_password_but_stays_disabled() -> None:
    commands = token_commands(_device("esp32-b", enabled=False), "secret-token-123", PATTERNS)
    assert commands[-1] == {"command": "disableClient", "username": "esp32-b"}


def test_device_credentials_follow_the_manage_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert device_credentials(Settings().mqtt) is None  # devices use the MQTT front
    monkeypatch.setenv("FLEET_MQTT__MANAGE_DEVICE_CREDENTIALS", "true")
    assert isinstance(device_credentials(Settings().mqtt), BrokerCredentials)


async def test_without_broker_credentials_create_and_rotate_never_call_a_broker() -> None:
    # The broker named here does not exist: with the hook on, both would fail (CredentialsNotSet).
    mqtt = Settings().mqtt.model_copy(
        update={"host": "broker.invalid", "manage_device_credentials": False}
    )
    publisher = MemoryPublisher()
    registry = DeviceRegistry(MemoryStore(), publisher, device_credentials(mqtt))
    device, token = await registry.create(NewDevice(device_id="esp32-no-mqtt"))
    rotated, new_token = await registry.rotate_token("esp32-no-mqtt")
    assert device.token_hash == hash_token(token)
    assert rotated.token_hash == hash_token(new_token) != device.token_hash


async def test_a_device_imported_by_its_token_hash_gets_no_broker_password() -> None:
    credentials = RecordingCredentials()
    registry = DeviceRegistry(MemoryStore(), MemoryPublisher(), credentials)
    digest = hash_token("a-seed004-token-0001")
    result = await registry.create_many(
        [(NewDevice(device_id="rec-1"), HashedToken(digest)), (NewDevice(device_id="b"), None)]
    )
    assert result.created[0] == ("rec-1", None)
    assert [call[0] for call in credentials.calls] == ["b"]
