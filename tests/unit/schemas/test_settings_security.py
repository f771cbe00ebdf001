"""Transport security settings: production refuses clear-text Kafka and device MQTT."""

from __future__ import annotations

import pytest

from schemas.settings import Settings


@pytest.fixture(autouse=True)
def _production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ENVIRONMENT", "production")
    monkeypatch.setenv("FLEET_POSTGRES__PASSWORD", "a-real-one")
    monkeypatch.setenv("FLEET_AUTH__ADMIN_TOKEN", "a-real-admin-token")
    monkeypatch.setenv("FLEET_MQTT__ADMIN_PASSWORD", "a-real-broker-admin-password")
    monkeypatch.setenv("FLEET_MQTT__BRIDGE_PASSWORD", "a-real-bridge-password")
    monkeypatch.setenv("FLEET_MQTT__FLOWS_PASSWORD", "a-real-flows-password")


def _secure_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FLEET_KAFKA__SASL_USERNAME", "api")
    monkeypatch.setenv("FLEET_KAFKA__SASL_PASSWORD", "a-real-kafka-password")
    monkeypatch.setenv("FLEET_MQTT_FRONT__PLAIN", "false")
    monkeypatch.setenv("FLEET_MQTT_FRONT__TLS_CERTFILE", "/etc/fleetstream/mqtt.pem")
    monkeypatch.setenv("FLEET_MQTT_FRONT__TLS_KEYFILE", "/etc/fleetstream/mqtt.key")


def test_production_accepts_sasl_ssl_kafka_and_tls_only_mqtt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _secure_transport(monkeypatch)
    settings = Settings()
    assert settings.kafka.encrypted
    assert "a-real-kafka-password" not in repr(settings)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_production_refuses_clear_text_kafka(
    monkeypatch: pytest.MonkeyPatch, protocol: str
) -> None:
    _secure_transport(monkeypatch)
    monkeypatch.setenv("FLEET_KAFKA__SECURITY_PROTOCOL", protocol)
    with pytest.raises(ValueError, match="FLEET_KAFKA__SECURITY_PROTOCOL"):
        Settings()


def test_production_refuses_the_plain_mqtt_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    _secure_transport(monkeypatch)
    monkeypatch.setenv("FLEET_MQTT_FRONT__PLAIN", "true")
    with pytest.raises(ValueError, match="FLEET_MQTT_FRONT__PLAIN"):
        Settings()


def test_allow_plaintext_lets_production_run_in_clear_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLEET_ALLOW_PLAINTEXT", "true")
    settings = Settings()
    assert settings.kafka.security_protocol == "PLAINTEXT"
    assert settings.mqtt_front.plain


def test_development_keeps_clear_text_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ENVIRONMENT", "development")
    assert Settings().kafka.security_protocol == "PLAINTEXT"


def test_sasl_needs_a_user_and_a_password(monkeypatch: pytest.MonkeyPatch) -> None:
    _secure_transport(monkeypatch)
    monkeypatch.setenv("FLEET_KAFKA__SASL_PASSWORD", "")
    with pytest.raises(ValueError, match="FLEET_KAFKA__SASL_PASSWORD"):
        Settings()
