"""One access rule for every /metrics, and no ``*_created`` series."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import SecretStr

from connectors.prometheus import render, scrape_allowed
from schemas.settings import AuthSettings, MetricsSettings, Settings


def settings(access: str, token: str = "s3cret") -> Settings:  # noqa: S107 - a test token
    return Settings().model_copy(
        update={
            "metrics": MetricsSettings(access=access),
            "auth": AuthSettings(admin_token=SecretStr(token)),
        }
    )


def test_open_lets_anyone_read() -> None:
    assert scrape_allowed(settings("open"), None)


def test_token_wants_the_admin_token_as_bearer() -> None:
    rule = settings("token")
    assert scrape_allowed(rule, "Bearer s3cret")
    assert scrape_allowed(rule, "bearer  s3cret ")
    assert not scrape_allowed(rule, None)
    assert not scrape_allowed(rule, "Bearer s3cre")
    assert not scrape_allowed(rule, "Basic s3cret")
    assert not scrape_allowed(rule, "Bearer ")


def test_an_empty_admin_token_opens_nothing() -> None:
    assert not scrape_allowed(settings("token", token=""), "Bearer ")


def test_counters_and_histograms_come_without_created_series() -> None:
    registry = CollectorRegistry()
    Counter("unit_things", "things", ["kind"], registry=registry).labels("a").inc()
    Histogram("unit_seconds", "seconds", registry=registry).observe(0.1)
    body, content_type = render(registry)
    text = body.decode()
    assert 'unit_things_total{kind="a"} 1.0' in text
    assert "unit_seconds_count 1.0" in text
    assert "_created" not in text
    assert content_type.startswith("text/plain")
