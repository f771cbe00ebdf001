"""docs/prometheus/seed-aliases.rules.yml: every seed metric name is recorded (or listed as not
recorded, with why), and every rule reads only metrics, and labels, that fleetstream really
exports: the test parses the exposition of the API, the worker and the MQTT front."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import yaml
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import ApiMetrics
from connectors.mqtt.front.metrics import FrontMetrics
from streams.metrics import WorkerMetrics
from streams.web.exposition import exposition
from streams.web.lag import PartitionLag

RULES = Path(__file__).resolve().parents[2] / "docs" / "prometheus" / "seed-aliases.rules.yml"

SEED_002 = {
    "sensor_data_ingested_total",
    "sensor_data_errors_total",
    "sensor_data_processing_latency_seconds_bucket",
    "active_connections",
    "queue_size",
}
"""The names seed 002's dashboard and alert rules query."""
SEED_003 = {
    "ingestion_requests_total",
    "ingestion_request_duration_seconds_bucket",
    "ingestion_frames_total",
}
"""Seed 003's key metrics (its request latency is a histogram: its buckets)."""
NOT_RECORDED: set[str] = set()
"""Named in the file's header with the reason (none today)."""

_NAME = re.compile(r"\bfleet_[a-z0-9_]+")
_SELECTOR = re.compile(r"\b(fleet_[a-z0-9_]+)\{([^}]*)\}")
_MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
_GROUPING = re.compile(r"\b(?:without|by)\s*\(([^)]*)\)")


def rules() -> list[dict[str, str]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def _touched(metrics: object) -> object:
    """Give every labelled metric one child, so the exposition shows its samples and labels."""
    for metric in vars(metrics).values():
        # a child (labels already set, e.g. a cached one) is skipped: its parent is touched
        if isinstance(metric, MetricWrapperBase) and metric._labelnames and not metric._labelvalues:
            metric.labels(*["x"] * len(metric._labelnames))
    return metrics


async def exported() -> dict[str, set[str]]:
    """Sample name → its label names, from the three kinds of process's /metrics text (the
    worker's: its agents' metrics, fresh, and what its exposition adds per scrape)."""
    api = cast(ApiMetrics, _touched(ApiMetrics()))
    front = cast(FrontMetrics, _touched(FrontMetrics()))
    worker = cast(WorkerMetrics, _touched(WorkerMetrics()))

    async def lag() -> list[PartitionLag]:
        return [PartitionLag("fleet-worker", "fleet.raw.v1", 0, 5, 0, 7)]

    not_ready = SimpleNamespace(rebalancing=True, tables=SimpleNamespace(recovery=None))
    trends = SimpleNamespace(latest_devices=lambda: {"online": 1, "offline": 0})
    operator = SimpleNamespace(app=not_ready, lag=lag, trends=trends)
    per_scrape, _ = await exposition(cast(Any, operator))
    texts = [
        generate_latest(api.registry),
        generate_latest(front.registry),
        generate_latest(worker.registry),
        per_scrape,
    ]
    samples: dict[str, set[str]] = {}
    for text in texts:
        for family in text_string_to_metric_families(text.decode()):
            for sample in family.samples:
                samples.setdefault(sample.name, set()).update(sample.labels)
    return samples


def problems(rule: dict[str, str], samples: dict[str, set[str]]) -> list[str]:
    """What in ``rule`` is not exported: metric names, and labels none of its metrics has."""
    expr = rule["expr"]
    names = set(_NAME.findall(expr))
    if not names:
        return ["reads no fleetstream metric"]
    missing = sorted(names - samples.keys())
    if missing:
        return [f"not exported: {name}" for name in missing]
    labels = set().union(*(samples[name] for name in names))
    used = {m for _, inner in _SELECTOR.findall(expr) for m in _MATCHER.findall(inner)}
    used |= {
        label.strip()
        for grouping in _GROUPING.findall(expr)
        for label in grouping.split(",")
        if label.strip()
    }
    return [f"no such label: {label}" for label in sorted(used - labels)]


def test_every_seed_name_is_recorded_or_said_not_to_be() -> None:
    recorded = {rule["record"] for rule in rules()}
    wanted = (SEED_002 | SEED_003) - NOT_RECORDED
    assert wanted <= recorded
    assert not recorded & NOT_RECORDED
    header = RULES.read_text().split("groups:")[0]
    assert all(f"`{name}`" in header for name in NOT_RECORDED)


async def test_every_rule_reads_metrics_and_labels_we_export() -> None:
    samples = await exported()
    found = [(rule["record"], problems(rule, samples)) for rule in rules()]
    assert [(record, found) for record, found in found if found] == []


async def test_the_check_finds_a_misspelt_metric_and_a_label_it_does_not_have() -> None:
    samples = await exported()
    misspelt = {"record": "a", "expr": "sum (fleet_api_readings_acepted_total)"}
    assert problems(misspelt, samples) == ["not exported: fleet_api_readings_acepted_total"]
    wrong_label = {"record": "b", "expr": 'sum without (stage) (fleet_api_requests_total{x="1"})'}
    assert problems(wrong_label, samples) == ["no such label: stage", "no such label: x"]
