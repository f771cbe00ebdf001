"""Per-flow metrics of a worker: runs, errors, time spent, outbound calls, alerts.

Counted per batch (a Prometheus update per run would cost more than a short flow's run), in a
registry of our own, exposed by the worker's web server at ``/flows/metrics/`` (Prometheus text)
and summarised at ``/flows/`` (JSON). Latency is ``fleet_flow_run_seconds_total`` divided by
``fleet_flow_runs_total`` over any window (the CPU time of the runs, not the outbound calls).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from streams.flow_engine.catalog import FlowSet

if TYPE_CHECKING:
    from agents.flows_runner import FlowStats
    from connectors.integrations.dispatch import Failure


class FlowMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.runs = Counter(
            "fleet_flow_runs",
            "flow runs (one per matching reading)",
            ["flow"],
            registry=self.registry,
        )
        self.errors = Counter(
            "fleet_flow_errors", "runs that failed to evaluate", ["flow"], registry=self.registry
        )
        self.seconds = Counter(
            "fleet_flow_run_seconds",
            "time spent running the flow",
            ["flow"],
            registry=self.registry,
        )
        self.calls = Counter(
            "fleet_flow_calls", "outbound calls made", ["kind"], registry=self.registry
        )
        self.failed_calls = Counter(
            "fleet_flow_call_failures",
            "outbound calls dead-lettered after their retries",
            ["flow", "kind"],
            registry=self.registry,
        )
        self.alerts = Counter(
            "fleet_flow_alert_transitions", "alerts fired or cleared", registry=self.registry
        )
        self._totals: dict[str, Tally[str]] = {}

    def record(
        self,
        stats: Mapping[str, FlowStats],
        failures: Sequence[Failure],
        calls: int,
        alerts: int,
    ) -> None:
        for flow_id, flow in stats.items():
            self.runs.labels(flow_id).inc(flow.runs)
            self.seconds.labels(flow_id).inc(flow.seconds)
            totals = self._totals.setdefault(flow_id, Tally())
            totals["runs"] += flow.runs
            if flow.errors:
                self.errors.labels(flow_id).inc(flow.errors)
                totals["errors"] += flow.errors
        for failure in failures:
            self.failed_calls.labels(failure.call.flow_id, failure.call.kind).inc()
            self._totals.setdefault(failure.call.flow_id, Tally())["failed_calls"] += 1
        if calls:
            self.calls.labels("all").inc(calls)
        if alerts:
            self.alerts.inc(alerts)

    def summary(self, flowset: FlowSet) -> dict[str, Any]:
        return {
            "flows": [
                {
                    "flow_id": flow.flow_id,
                    "version": flow.version,
                    "name": flow.name,
                    "alert_rule": flow.alert is not None,
                    "runs": self._totals.get(flow.flow_id, Tally())["runs"],
                    "errors": self._totals.get(flow.flow_id, Tally())["errors"],
                    "failed_calls": self._totals.get(flow.flow_id, Tally())["failed_calls"],
                }
                for flow in flowset.flows
            ]
        }

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
