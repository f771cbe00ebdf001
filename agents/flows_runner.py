"""One taken batch of curated envelopes through the enabled flows, without Faust or I/O.

:meth:`FlowRunner.run_batch` reads every reading once, finds the flows that match it (device
id, tags, profile from the enrichment; the sensor types it carries), runs them and returns:

* the alert transitions (records for ``fleet.alerts.v1``) and dead letters for readings a flow
  could not evaluate (stage ``flow.<id>``) or that could not be read (stage ``flows``);
* the outbound calls to make, each with the Kafka message it came from (for dead letters);
* the new :class:`~streams.flow_engine.alerts.DeviceFlowState` of every device that ran a flow,
  to write to the table once per device (with the message index to write it as).

Repeats are dropped by raw position, as the status agent does (``schemas.envelopes``): a device's
state remembers the last position it applied per raw partition, so a batch replayed after a
crash neither calls out again nor fires an alert twice once its state was written.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from agents.deadletters import KafkaMessage, dead_letter, item_letters
from connectors.kafka.producer import Record
from schemas.contract_wire import encode_alert
from schemas.envelopes import CuratedRead, CuratedReader, Position
from schemas.errors import ValidationFailure
from schemas.flows import Outbound
from streams.flow_engine import alerts
from streams.flow_engine.catalog import FlowSet
from streams.flow_engine.engine import CompiledFlow, ReadingView, RunResult
from streams.outputs import Outputs

log = logging.getLogger(__name__)

STAGE = "flows"


class FlowReading(msgspec.Struct, frozen=True):
    """What flows read of a curated reading (``schemas.events.CuratedReading``)."""

    event_id: str
    device_id: str
    ts: datetime
    sensors: dict[str, Any]
    metadata: dict[str, Any] | None = None
    device_name: str | None = None
    profile: str | None = None
    location: Any = None
    tags: list[str] = []


_reader = CuratedReader(FlowReading, positions=True)


@dataclass
class FlowStats:
    """Per-flow counts of one batch (turned into Prometheus counters by the agent)."""

    runs: int = 0
    errors: int = 0
    seconds: float = 0.0


@dataclass
class BatchResult:
    outputs: Outputs
    calls: list[tuple[Outbound, KafkaMessage]] = field(default_factory=list)
    states: dict[str, tuple[int, alerts.DeviceFlowState]] = field(default_factory=dict)
    stats: dict[str, FlowStats] = field(default_factory=dict)
    alerts: list[msgspec.Struct] = field(default_factory=list)


TimezoneOf = Callable[[str, Any], str]
"""(device_id, location) → the device's IANA time zone."""
StateOf = Callable[[str], alerts.DeviceFlowState | None]


def location_timezone(_device_id: str, location: Any) -> str:
    """The default time zone rule without a registry: ``location.timezone``, else UTC."""
    if isinstance(location, dict) and isinstance(location.get("timezone"), str):
        return str(location["timezone"])
    return "UTC"


@dataclass
class FlowRunner:
    alerts_topic: str
    deadletter_topic: str
    timezone_of: TimezoneOf = location_timezone

    def run_batch(
        self,
        messages: Sequence[KafkaMessage],
        flowset: FlowSet,
        state_of: StateOf,
        now: datetime,
    ) -> BatchResult:
        result = BatchResult(Outputs())
        if not flowset:
            return result
        for index, message in enumerate(messages):
            try:
                read = _reader.read(message.value)
            except ValidationFailure as exc:
                self._letter(result, dead_letter(STAGE, message, exc, now))
                continue
            for letter in item_letters(STAGE, message, read.failures, now):
                self._letter(result, letter)
            positions = read.positions
            for k in range(len(read.items)):
                position = None if positions is None else positions[k]
                self._item(result, flowset, state_of, now, index, message, read, k, position)
        return result

    def _item(
        self,
        result: BatchResult,
        flowset: FlowSet,
        state_of: StateOf,
        now: datetime,
        index: int,
        message: KafkaMessage,
        read: CuratedRead[FlowReading],
        k: int,
        position: Position | None,
    ) -> None:
        """The ``k``-th reading of ``read`` through the flows that match it."""
        reading = read.items[k]
        device_flows = flowset.for_device(reading.device_id, reading.tags, reading.profile)
        flows = FlowSet.for_reading(device_flows, reading.sensors)
        if not flows:
            return
        entry = result.states.get(reading.device_id)
        if entry is None:
            state = state_of(reading.device_id) or alerts.DeviceFlowState()
            entry = result.states[reading.device_id] = (index, state)
        state = entry[1]
        if position is not None and not _new(state, position):
            return  # a repeat of a reading this device's flows already ran on
        view = self._view(reading)
        for flow in flows:
            run = self._run(result, flow, view)
            if run.error is not None:
                letter = dead_letter(
                    flow.stage,
                    message,
                    run.error,
                    now,
                    original=bytes(read.raws()[k]),
                    key=reading.device_id,
                    event_id=reading.event_id,
                    item=read.indexes[k],
                )
                self._letter(result, letter)
                continue
            if run.outbound:
                result.calls.extend((call, message) for call in run.outbound)
            if run.alert is not None and flow.alert is not None:
                self._alert(result, state, flow, reading, run, now)

    def _run(self, result: BatchResult, flow: CompiledFlow, view: ReadingView) -> RunResult:
        stats = result.stats.get(flow.flow_id)
        if stats is None:
            stats = result.stats[flow.flow_id] = FlowStats()
        started = time.perf_counter()
        run = flow.run(view, trace=False)
        stats.seconds += time.perf_counter() - started
        stats.runs += 1
        if run.error is not None:
            stats.errors += 1
        return run

    def _alert(
        self,
        result: BatchResult,
        state: alerts.DeviceFlowState,
        flow: CompiledFlow,
        reading: FlowReading,
        run: RunResult,
        now: datetime,
    ) -> None:
        assert flow.alert is not None and run.alert is not None  # noqa: S101 - checked by caller
        rule_state = state.rules.get(flow.flow_id)
        if rule_state is None:
            rule_state = state.rules[flow.flow_id] = alerts.RuleState()
        rule = alerts.Rule(flow.flow_id, flow.version, flow.name, flow.alert)
        seen = alerts.Reading(reading.device_id, reading.event_id, reading.ts)
        event = alerts.step(rule_state, rule, seen, run.alert, now)
        if event is None:
            return
        log.info(
            "alert %s %s: rule %s device %s (%s)",
            event.alert_id,
            event.state,
            event.rule_id,
            event.device_id,
            event.severity,
        )
        result.alerts.append(event)
        result.outputs.add(
            self.alerts_topic, Record(reading.device_id.encode(), encode_alert(event))
        )

    def _view(self, reading: FlowReading) -> ReadingView:
        device = {
            "id": reading.device_id,
            "name": reading.device_name,
            "profile": reading.profile,
            "tags": reading.tags,
            "location": reading.location,
            "timezone": self.timezone_of(reading.device_id, reading.location),
        }
        return ReadingView(
            event_id=reading.event_id,
            device_id=reading.device_id,
            ts=reading.ts,
            sensors=reading.sensors,
            metadata=reading.metadata,
            device=device,
        )

    def _letter(self, result: BatchResult, letter: Record) -> None:
        result.outputs.add(self.deadletter_topic, letter)


def _new(state: alerts.DeviceFlowState, position: Position) -> bool:
    """Whether ``position`` is past what ``state`` applied; advances it."""
    partition, offset, index = position
    key = str(partition)
    last = state.positions.get(key)
    if last is not None and (offset, index) <= tuple(last):
        return False
    state.positions[key] = (offset, index)
    return True
