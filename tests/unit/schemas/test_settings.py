"""The settings object: environment parsing, secrets, and the child-process round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.settings import CompatSettings, MqttFrontSettings, Settings
from tests.support import settings_env


def test_nested_sections_come_from_fleet_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_KAFKA__PARTITIONS", "3")
    monkeypatch.setenv("FLEET_TOPICS__RAW", "custom.raw")
    monkeypatch.setenv("FLEET_API__PORT", "9000")
    settings = Settings()
    assert settings.kafka.partitions == 3
    assert settings.topics.raw == "custom.raw"
    assert settings.api.port == 9000


def test_password_is_secret_but_in_the_dsn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_POSTGRES__PASSWORD", "s3cret")
    settings = Settings()
    assert "s3cret" not in repr(settings)
    assert settings.postgres.dsn() == "postgresql://fleetstream:s3cret@127.0.0.1:5432/fleetstream"
    assert settings.postgres.dsn("other").endswith("/other")


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_KAFKA__PARTITIONS", "0")
    with pytest.raises(ValueError, match="partitions"):
        Settings()


def test_production_refuses_the_default_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_ENVIRONMENT", "production")
    with pytest.raises(ValueError, match="FLEET_POSTGRES__PASSWORD"):
        Settings()
    monkeypatch.setenv("FLEET_POSTGRES__PASSWORD", "a-real-one")
    monkeypatch.setenv("FLEET_AUTH__ADMIN_TOKEN", "a-real-admin-token")
    monkeypatch.setenv("FLEET_MQTT__ADMIN_PASSWORD", "a-real-broker-admin-password")
    monkeypatch.setenv("FLEET_MQTT__BRIDGE_PASSWORD", "a-real-bridge-password")
    monkeypatch.setenv("FLEET_MQTT__FLOWS_PASSWORD", "a-real-flows-password")
    monkeypatch.setenv("FLEET_ALLOW_PLAINTEXT", "true")  # transport: test_settings_security
    assert Settings().environment == "production"


def test_child_processes_get_the_same_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    original = Settings().model_copy(
        update={
            "worker": Settings().worker.model_copy(
                update={"web_enabled": False, "datadir": Path("faust-data")}
            )
        }
    )
    for name, value in settings_env(original).items():
        monkeypatch.setenv(name, value)
    assert Settings() == original


def test_the_fronts_shown_by_the_operator_views_default_to_the_one_this_host_runs() -> None:
    assert MqttFrontSettings(health_port=9200).health_urls() == ["http://127.0.0.1:9200"]
    assert MqttFrontSettings(host="0.0.0.0").health_urls()  # noqa: S104 == ["http://127.0.0.1:9105"]
    assert MqttFrontSettings(host="::1").health_urls() == ["http://[::1]:9105"]
    listed = MqttFrontSettings(urls=" http://a:9105/, http://b:9106 ,")
    assert listed.health_urls() == ["http://a:9105", "http://b:9106"]


def test_the_front_s_tls_listener_needs_certificate_and_key_and_some_listener_stays() -> None:
    with pytest.raises(ValueError, match="go together"):
        MqttFrontSettings(tls_certfile="front.pem")
    with pytest.raises(ValueError, match="leaves no listener"):
        MqttFrontSettings(plain=False)
    both = MqttFrontSettings(plain=False, tls_certfile="a.pem", tls_keyfile="a.key")
    assert both.tls and not both.plain


def test_compat_profiles_name_known_seeds_and_networks_are_cidrs() -> None:
    assert CompatSettings().profiles() == frozenset()
    assert CompatSettings(seeds=" 1, 003 ,").profiles() == {"001", "003"}
    with pytest.raises(ValueError, match="unknown seed"):
        CompatSettings(seeds="001,005")
    with pytest.raises(ValueError, match="TRUSTED_NETWORKS"):
        CompatSettings(trusted_networks="10.0.0.0/8, plant-lan")
    networks = CompatSettings(trusted_networks="10.20.0.0/16,::1").networks()
    assert [str(n) for n in networks] == ["10.20.0.0/16", "::1/128"]
