"""The auth section: secrets stay secret, unsafe combinations are refused at startup."""

from __future__ import annotations

import pytest

from schemas.settings import DEV_ADMIN_TOKEN, Settings


@pytest.fixture(autouse=True)
def _production_ready_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_POSTGRES__PASSWORD", "a-real-one")


def test_admin_token_is_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AUTH__ADMIN_TOKEN", "s3cret-admin")
    settings = Settings()
    assert settings.auth.admin_token.get_secret_value() == "s3cret-admin"
    assert "s3cret-admin" not in repr(settings)


@pytest.mark.parametrize("token", [DEV_ADMIN_TOKEN, ""])
def test_production_refuses_a_default_or_empty_admin_token(
    monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("FLEET_ENVIRONMENT", "production")
    monkeypatch.setenv("FLEET_AUTH__ADMIN_TOKEN", token)
    with pytest.raises(ValueError, match="FLEET_AUTH__ADMIN_TOKEN"):
        Settings()


@pytest.mark.parametrize("environment", ["development", "test"])
def test_the_default_admin_token_is_fine_outside_production(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("FLEET_ENVIRONMENT", environment)
    assert Settings().auth.admin_token.get_secret_value() == DEV_ADMIN_TOKEN


@pytest.mark.parametrize("environment", ["test", "production"])
def test_unauthenticated_ingest_is_refused_outside_development(
    monkeypatch: pytest.MonkeyPatch, environment: str
) -> None:
    monkeypatch.setenv("FLEET_ENVIRONMENT", environment)
    monkeypatch.setenv("FLEET_AUTH__ADMIN_TOKEN", "a-real-admin-token")
    monkeypatch.setenv("FLEET_AUTH__ALLOW_UNAUTHENTICATED_INGEST", "true")
    with pytest.raises(ValueError, match="FLEET_AUTH__ALLOW_UNAUTHENTICATED_INGEST"):
        Settings()


def test_unauthenticated_ingest_is_allowed_in_development(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_AUTH__ALLOW_UNAUTHENTICATED_INGEST", "true")
    assert Settings().auth.allow_unauthenticated_ingest is True
    monkeypatch.delenv("FLEET_AUTH__ALLOW_UNAUTHENTICATED_INGEST")
    assert Settings().auth.allow_unauthenticated_ingest is False
