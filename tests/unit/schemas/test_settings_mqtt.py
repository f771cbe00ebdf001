"""The mqtt and live settings sections."""

from __future__ import annotations

import pytest

from schemas.settings import Settings


def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ENVIRONMENT", "production")
    monkeypatch.setenv("FLEET_POSTGRES__PASSWORD", "a-real-one")
    monkeypatch.setenv("FLEET_AUTH__ADMIN_TOKEN", "a-real-admin-token")
    monkeypatch.setenv("FLEET_MQTT__ADMIN_PASSWORD", "a-real-broker-admin-password")
    monkeypatch.setenv("FLEET_MQTT__BRIDGE_PASSWORD", "a-real-bridge-password")
    monkeypatch.setenv("FLEET_MQTT__FLOWS_PASSWORD", "a-real-flows-password")
    monkeypatch.setenv("FLEET_ALLOW_PLAINTEXT", "true")  # transport: test_settings_security


@pytest.mark.parametrize("name", ["ADMIN_PASSWORD", "BRIDGE_PASSWORD", "FLOWS_PASSWORD"])
@pytest.mark.parametrize(
    "value",
    ["", "dev-mqtt-admin-change-me", "dev-mqtt-bridge-change-me", "dev-mqtt-flows-change-me"],
)
def test_production_refuses_default_or_empty_broker_passwords(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    _production(monkeypatch)
    assert Settings().environment == "production"
    monkeypatch.setenv(f"FLEET_MQTT__{name}", value)
    default = value == "" or name.split("_")[0].lower() in value
    if default:
        with pytest.raises(ValueError, match=f"FLEET_MQTT__{name}"):
            Settings()
    else:  # the other user's default is just an unusual password here
        assert Settings().environment == "production"


def test_topic_patterns_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_MQTT__TOPICS", " a/+/b , ,c/+ ")
    assert Settings().mqtt.topic_patterns == ["a/+/b", "c/+"]
    assert Settings(_env_file=None).live.read_token.get_secret_value() == ""
