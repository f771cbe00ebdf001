"""The monitoring assets in docs/: the Prometheus rules pass ``promtool check rules`` and their
tests with synthetic series (``promtool test rules``); every metric the rules and the Grafana
dashboard name is one the processes export (a renamed metric breaks this, not a dashboard).

promtool comes from Debian's ``prometheus`` package: ``make test`` installs it
(``python -m cli.stack.dev_tools``); without it this test fails rather than skips.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from api.metrics import ApiMetrics
from connectors.mqtt.front.metrics import FrontMetrics
from streams.metrics import WorkerMetrics
from streams.web.exposition import scrape_families

DOCS = Path(__file__).resolve().parents[2] / "docs"
RULES = DOCS / "prometheus" / "fleetstream.rules.yml"
RULES_TEST = DOCS / "prometheus" / "fleetstream.rules.test.yml"
SEED_ALIASES = DOCS / "prometheus" / "seed-aliases.rules.yml"
DASHBOARD = DOCS / "grafana" / "fleetstream.json"
METRIC_NAME = re.compile(r"\b(fleet_[a-z0-9_]+|fleet:[a-z0-9_:]+)\b")
PROMETHEUS_OWN = {"up"}
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}


def sample_names(families: Iterable[Metric]) -> set[str]:
    return {f"{family.name}{suffix}" for family in families for suffix in SUFFIXES[family.type]}


def exported() -> set[str]:
    """Every sample name the API, a worker and an MQTT front serve at /metrics."""
    registries: list[CollectorRegistry] = [
        WorkerMetrics().registry,
        ApiMetrics().registry,
        FrontMetrics().registry,
    ]
    families = [family for registry in registries for family in registry.collect()]
    families += scrape_families({}, [], ready=True, devices={"online": 0})
    return sample_names(families)


def rule_groups() -> list[dict[str, object]]:
    groups: list[dict[str, object]] = yaml.safe_load(RULES.read_text())["groups"]
    return groups


def rule_exprs() -> list[str]:
    return [str(rule["expr"]) for group in rule_groups() for rule in group["rules"]]  # type: ignore[attr-defined]


def recorded() -> set[str]:
    return {
        str(rule["record"])
        for group in rule_groups()
        for rule in group["rules"]  # type: ignore[attr-defined]
        if "record" in rule
    }


def dashboard_exprs() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def unknown_names(expr: str, known: set[str]) -> set[str]:
    return {name for name in METRIC_NAME.findall(expr) if name not in known}


def test_the_exported_names_include_every_kind_of_process() -> None:
    names = exported()
    for name in (
        "fleet_agent_events_total",
        "fleet_reading_to_row_seconds_bucket",
        "fleet_consumer_lag",
        "fleet_worker_ready",
        "fleet_devices",
        "fleet_api_requests_total",
        "fleet_mqtt_publishes_total",
    ):
        assert name in names
    assert not any(name.endswith("_created") for name in names)


def test_every_metric_the_rules_name_is_exported_or_recorded() -> None:
    known = exported() | recorded() | PROMETHEUS_OWN
    exprs = rule_exprs()
    assert len(exprs) >= 15
    for expr in exprs:
        assert METRIC_NAME.search(expr) or "up{" in expr, expr
        assert unknown_names(expr, known) == set(), expr


def test_every_dashboard_expr_names_exported_metrics() -> None:
    known = exported() | recorded()
    exprs = dashboard_exprs()
    assert len(exprs) >= 15
    for expr in exprs:
        assert METRIC_NAME.search(expr), expr
        assert unknown_names(expr, known) == set(), expr


def test_a_renamed_metric_is_caught() -> None:
    assert unknown_names("rate(fleet_agent_event_total[5m])", exported()) == {
        "fleet_agent_event_total"
    }


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is missing: `make test` installs it (python -m cli.stack.dev_tools), or "
            "install Debian's prometheus package"
        )
    return found


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - promtool with our own files
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_promtool_checks_the_rules() -> None:
    checked = run("check", "rules", "--lint-fatal", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # The seed aliases record two series under one name on purpose (their header says why).
    aliases = run("check", "rules", "--lint=none", str(SEED_ALIASES))
    assert aliases.returncode == 0, aliases.stdout + aliases.stderr


def test_promtool_tests_the_rules_with_synthetic_series() -> None:
    tested = run("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
