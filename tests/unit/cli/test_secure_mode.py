"""Who connects as whom when `fleetstream run` runs the secure local stack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from cli import secure_mode
from cli.stack.certs import Pki
from cli.stack.kafka_security import passwords
from schemas.settings import (
    BlobSettings,
    KafkaSettings,
    PostgresSettings,
    RedisSettings,
    SchemaRegistrySettings,
    Settings,
    StackSettings,
    get_settings,
)


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
    postgres = PostgresSettings(sslmode="require")
    redis = RedisSettings(tls=True)
    blob = BlobSettings(s3_endpoint="https://s3.example")
    registry = SchemaRegistrySettings(url="https://registry.example")
    settings = _settings(tmp_path).model_copy(
        update={
            "kafka": kafka,
            "postgres": postgres,
            "redis": redis,
            "blob": blob,
            "schema_registry": registry,
        }
    )
    assert secure_mode.child_env(settings, "worker") is None
    assert secure_mode.services_env(settings) == {}
    assert secure_mode.as_admin(settings) is settings


def test_secure_mode_gives_postgres_and_redis_tls_with_the_local_ca(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    ca = str(tmp_path / "pki" / "ca.pem")
    expected = {
        "FLEET_POSTGRES__SSLMODE": "verify-full",
        "FLEET_POSTGRES__SSL_ROOTCERT": ca,
        "FLEET_REDIS__TLS": "true",
        "FLEET_REDIS__TLS_CAFILE": ca,
        "FLEET_BLOB__S3_ENDPOINT": "https://127.0.0.1:9000",
        "FLEET_BLOB__S3_CAFILE": ca,
        "FLEET_SCHEMA_REGISTRY__URL": "https://127.0.0.1:8081/apis/ccompat/v7",
        "FLEET_SCHEMA_REGISTRY__CAFILE": ca,
    }
    assert secure_mode.services_env(settings) == expected
    for child in ("api", "worker", "mqtt-front"):
        env = secure_mode.child_env(settings, child)
        assert env is not None
        assert {key: env[key] for key in expected} == expected
    assert secure_mode.services_env(_settings(tmp_path, secure=False)) == {}


def test_a_postgres_or_redis_tls_setting_given_explicitly_is_kept(tmp_path: Path) -> None:
    own_ca = {"postgres": PostgresSettings(sslmode="verify-ca", ssl_rootcert="/other/ca.pem")}
    settings = _settings(tmp_path).model_copy(update=own_ca)
    env = secure_mode.services_env(settings)
    assert "FLEET_POSTGRES__SSLMODE" not in env
    assert "FLEET_POSTGRES__SSL_ROOTCERT" not in env
    assert env["FLEET_REDIS__TLS"] == "true"


def test_the_command_itself_connects_over_tls_in_secure_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "environ", dict(os.environ))  # as_admin writes the environment
    monkeypatch.setenv("FLEET_STACK__HOME", str(tmp_path))
    monkeypatch.setenv("FLEET_STACK__SECURE", "true")
    get_settings.cache_clear()
    try:
        admin = secure_mode.as_admin(get_settings())
    finally:
        get_settings.cache_clear()
    assert admin.postgres.sslmode == "verify-full"
    assert admin.postgres.ssl_rootcert == str(tmp_path / "pki" / "ca.pem")
    assert admin.redis.tls is True
    assert admin.blob.s3_endpoint.startswith("https://")
    assert admin.schema_registry.url.startswith("https://")
    assert admin.kafka.sasl_username == "admin"


def _command_names() -> list[str]:
    import typer.main
    from typer.core import TyperGroup

    from cli.main import app

    group = typer.main.get_command(app)
    assert isinstance(group, TyperGroup)
    return sorted(group.commands)


def test_every_command_but_the_services_and_run_switches_to_the_super_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The app's callback switches before any command runs, so an admin command added later
    cannot forget to; the services keep the principal their environment names."""
    from typer.testing import CliRunner

    from cli.main import app

    switched: list[bool] = []
    monkeypatch.setattr(secure_mode, "as_admin", lambda settings: switched.append(True))
    names = _command_names()
    assert set(names) >= secure_mode.SERVICE_COMMANDS | secure_mode.SELF_SWITCHING
    assert {"devices", "flows", "topics", "tail", "lag", "deadletters", "setup"} <= set(names)
    for name in names:
        switched.clear()
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        own_principal = name in secure_mode.SERVICE_COMMANDS | secure_mode.SELF_SWITCHING
        assert switched == ([] if own_principal else [True]), name


def test_an_admin_command_in_secure_mode_connects_as_admin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "environ", dict(os.environ))  # for_command writes the environment
    monkeypatch.setenv("FLEET_STACK__SECURE", "true")
    monkeypatch.setenv("FLEET_STACK__HOME", str(tmp_path))
    monkeypatch.setattr(Pki, "ensure", lambda self, progress: None)
    get_settings.cache_clear()
    try:
        secure_mode.for_command("api")
        assert get_settings().kafka.security_protocol == "PLAINTEXT"
        secure_mode.for_command("devices")
        kafka = get_settings().kafka
        assert (kafka.security_protocol, kafka.sasl_username) == ("SASL_SSL", "admin")
        assert kafka.sasl_password.get_secret_value() == passwords(tmp_path)["admin"]
    finally:
        get_settings.cache_clear()
