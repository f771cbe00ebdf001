"""Every Kafka client's security properties come from the Kafka settings."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from connectors.kafka.producer import ProducerConfig
from connectors.kafka.security import client_config, security_config
from schemas.settings import KafkaSettings


def _sasl_ssl() -> KafkaSettings:
    return KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_username="api",
        sasl_password=SecretStr("pw"),
        ssl_cafile="/pki/ca.pem",
    )


def test_plain_mode_adds_nothing() -> None:
    assert security_config(KafkaSettings()) == {}
    assert client_config("b:1", KafkaSettings(), acks="all") == {
        "bootstrap.servers": "b:1",
        "acks": "all",
    }


def test_sasl_ssl_properties() -> None:
    assert security_config(_sasl_ssl()) == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "api",
        "sasl.password": "pw",
        "ssl.ca.location": "/pki/ca.pem",
    }


def test_mutual_tls_properties() -> None:
    kafka = KafkaSettings(
        security_protocol="SSL", ssl_certfile="/pki/c.pem", ssl_keyfile="/pki/c.key"
    )
    config = security_config(kafka)
    assert config["security.protocol"] == "ssl"
    assert config["ssl.certificate.location"] == "/pki/c.pem"
    assert config["ssl.key.location"] == "/pki/c.key"
    assert "sasl.username" not in config


def test_the_edge_producer_connects_with_its_settings() -> None:
    config = ProducerConfig("b:1", kafka=_sasl_ssl()).librdkafka()
    assert config["security.protocol"] == "sasl_ssl"
    assert config["sasl.username"] == "api"


def test_without_settings_the_process_settings_apply(monkeypatch: pytest.MonkeyPatch) -> None:
    from schemas import settings as settings_module

    monkeypatch.setenv("FLEET_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("FLEET_KAFKA__SASL_USERNAME", "worker")
    monkeypatch.setenv("FLEET_KAFKA__SASL_PASSWORD", "pw")
    settings_module.get_settings.cache_clear()
    try:
        assert client_config("b:1")["sasl.username"] == "worker"
    finally:
        settings_module.get_settings.cache_clear()
