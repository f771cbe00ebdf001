"""Alert rule state per (rule, device): fire once when the condition starts, clear once when it
ends. Pure; the worker keeps :class:`DeviceFlowState` in a Faust Table (``agents.flows``).

Time is the readings' time (``ts``), never the worker's clock: ``for_s`` and schedules judge a
replayed or late batch exactly as they judged it the first time, and tests choose the time by
choosing timestamps. A reading older than the last one applied to a rule is ignored by it.

Transitions:

* inactive, condition holds inside the schedule: remember when it started; once it has held for
  ``for_s`` (the first reading does when ``for_s`` is 0) the alert **fires**: the episode number
  ``seq`` grows and names the alert (:func:`alert_id`);
* inactive, condition does not hold (or outside the schedule): forget the start;
* active, clear condition holds (default: the condition does not): the alert **clears**.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import msgspec

from schemas.flows import AlertEvent, AlertNode
from streams.flow_engine.engine import AlertSignal

_ALERT_NAMESPACE: Final = uuid.UUID("b0f4c3de-2f7e-4f55-8f0a-59a8f1b7c2d1")


class RuleState(msgspec.Struct, kw_only=True):
    active: bool = False
    seq: int = 0
    """Episodes so far; the current (or last) one is ``seq``."""
    pending_since: datetime | None = None
    started_at: datetime | None = None
    fired_at: datetime | None = None
    last_ts: datetime | None = None


class DeviceFlowState(msgspec.Struct, kw_only=True):
    """What the worker keeps per device: the raw positions applied (to drop repeats, see
    ``schemas.envelopes``) and the state of every alert rule that ran on the device."""

    positions: dict[str, tuple[int, int]] = {}
    rules: dict[str, RuleState] = {}


_state_decoder = msgspec.json.Decoder(DeviceFlowState)
_encoder = msgspec.json.Encoder()


def decode_state(data: bytes) -> DeviceFlowState:
    return _state_decoder.decode(data)


def encode_state(state: DeviceFlowState) -> bytes:
    return _encoder.encode(state)


def alert_id(rule_id: str, device_id: str, seq: int) -> str:
    return str(uuid.uuid5(_ALERT_NAMESPACE, f"{rule_id}/{device_id}/{seq}"))


@dataclass(frozen=True)
class Rule:
    """The parts of a compiled alert rule the state machine needs."""

    rule_id: str
    version: int
    name: str
    node: AlertNode


@dataclass(frozen=True)
class Reading:
    device_id: str
    event_id: str
    ts: datetime


def step(
    state: RuleState, rule: Rule, reading: Reading, signal: AlertSignal, now: datetime
) -> AlertEvent | None:
    """Apply one reading's signal to ``state`` (changed in place); the transition, if any."""
    if state.last_ts is not None and reading.ts < state.last_ts:
        return None  # older than what this rule already judged
    state.last_ts = reading.ts
    if state.active:
        if not signal.clear:
            return None
        state.active = False
        return _event(state, rule, reading, signal, now, "cleared")
    if not (signal.condition and signal.in_schedule):
        state.pending_since = None
        return None
    if state.pending_since is None:
        state.pending_since = reading.ts
    if (reading.ts - state.pending_since).total_seconds() < rule.node.for_s:
        return None
    state.active = True
    state.seq += 1
    state.started_at = state.pending_since
    state.fired_at = reading.ts
    state.pending_since = None
    return _event(state, rule, reading, signal, now, "fired")


def _event(
    state: RuleState,
    rule: Rule,
    reading: Reading,
    signal: AlertSignal,
    now: datetime,
    kind: str,
) -> AlertEvent:
    fired_at = state.fired_at or reading.ts
    return AlertEvent(
        alert_id=alert_id(rule.rule_id, reading.device_id, state.seq),
        rule_id=rule.rule_id,
        rule_version=rule.version,
        rule_name=rule.name,
        device_id=reading.device_id,
        severity=rule.node.severity,
        state="fired" if kind == "fired" else "cleared",
        started_at=state.started_at or fired_at,
        fired_at=fired_at,
        cleared_at=reading.ts if kind == "cleared" else None,
        value=signal.value,
        message=signal.message,
        event_id=reading.event_id,
        detected_at=now,
    )
