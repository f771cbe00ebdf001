"""Who connects as whom when `fleetstream run` runs the secure local stack."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from cli import secure_mode
from cli.stack.kafka_security import passwords
from schemas.settings import KafkaSettings, Settings, StackSettings


def _settings(home: Path, *, secure: bool = True) -> Settings:
    return Settings(stack=StackSettings(home=home, secure=secure))


def test_each_child_gets_its_own_principal_and_certificate(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    api = secure_mode.child_env(settings, "api")
    front = secure_mode.child_env(settings, "mqtt-front")
    worker = secure_mode.child_env(settings, "worker")
    assert api is not None and front is not None and worker is not None
    assert api["FLEET_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert api["FLEET_KAFKA__SASL_USERNAME"] == "api"
    assert api["FLEET_KAFKA__SASL_PASSWORD"] == passwords(tmp_path)["api"]
    assert api["FLEET_API__TLS_CERTFILE"] == str(tmp_path / "pki" / "api.pem")
    assert front["FLEET_KAFKA__SASL_USERNAME"] == "bridge"
    assert front["FLEET_MQTT_FRONT__TLS_KEYFILE"] == str(tmp_path / "pki" / "mqtt-front.key")
    assert worker["FLEET_KAFKA__SASL_USERNAME"] == "worker"
    assert worker["FLEET_WORKER__WEB_TLS_CERTFILE"] == str(tmp_path / "pki" / "worker.pem")


def test_plain_mode_leaves_children_alone(tmp_path: Path) -> None:
    settings = _settings(tmp_path, secure=False)
    assert secure_mode.child_env(settings, "api") is None
    assert secure_mode.as_admin(settings) is settings
    assert not (tmp_path / "pki").exists()


def test_explicit_kafka_security_is_a_deployment_of_its_own(tmp_path: Path) -> None:
    kafka = KafkaSettings(
        security_protocol="SASL_SSL", sasl_username="svc", sasl_password=SecretStr("pw")
    )
    settings = _settings(tmp_path).model_copy(update={"kafka": kafka})
    assert secure_mode.child_env(settings, "worker") is None
    assert secure_mode.as_admin(settings) is settings
