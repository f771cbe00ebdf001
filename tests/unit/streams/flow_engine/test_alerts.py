"""Alert rule state: duration, hysteresis, schedules in the device's zone, one fire per episode."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from schemas.flows import AlertEvent, FlowDocument, Schedule, decode_definition
from streams.flow_engine import alerts
from streams.flow_engine.engine import AlertSignal, ReadingView, compile_flow
from streams.flow_engine.examples import EXAMPLES, examples
from streams.flow_engine.schedule import in_schedule

T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def rule(name: str, for_s: float | None = None) -> alerts.Rule:
    """An example rule; ``for_s`` given: held that long before it fires."""
    body = EXAMPLES[name]
    if for_s is not None:
        body = {**body, "nodes": [{**body["nodes"][0], "for_s": for_s}]}
    definition = decode_definition(body)
    compiled = compile_flow(
        FlowDocument(
            flow_id=name,
            version=3,
            enabled=True,
            definition=definition,
            created_at=T0,
            updated_at=T0,
        )
    )
    assert compiled.alert is not None
    return alerts.Rule(compiled.flow_id, compiled.version, compiled.name, compiled.alert)


def gas(ppm: float, at: datetime) -> tuple[alerts.Reading, AlertSignal]:
    signal = AlertSignal(
        condition=ppm > 500, clear=ppm < 450, value=ppm, in_schedule=True, message=""
    )
    return alerts.Reading("esp32-1", f"e-{at.timestamp()}", at), signal


def feed(
    state: alerts.RuleState, points: list[tuple[float, int]], for_s: float | None = None
) -> list[AlertEvent]:
    events = []
    for ppm, seconds in points:
        reading, signal = gas(ppm, T0 + timedelta(seconds=seconds))
        event = alerts.step(state, rule("gas-above-500", for_s), reading, signal, T0)
        if event is not None:
            events.append(event)
    return events


def test_seed002s_gas_rule_fires_at_the_first_reading_above_500_and_clears_below_450() -> None:
    state = alerts.RuleState()
    events = feed(state, [(480, 0), (500, 5), (501, 10), (700, 20), (460, 30), (440, 40)])
    assert [event.state for event in events] == ["fired", "cleared"]
    fired, cleared = events
    assert (fired.fired_at, fired.value) == (T0 + timedelta(seconds=10), 501)
    assert cleared.cleared_at == T0 + timedelta(seconds=40)


def test_gas_held_30_s_fires_once_after_30_seconds_above_and_clears_once_below_450() -> None:
    state = alerts.RuleState()
    events = feed(
        state,
        [(600, 0), (610, 10), (620, 20), (630, 30), (640, 40), (480, 50), (470, 60), (400, 70),
         (300, 80)],
        for_s=30,
    )  # fmt: skip
    assert [event.state for event in events] == ["fired", "cleared"]
    fired, cleared = events
    assert fired.fired_at == T0 + timedelta(seconds=30)
    assert fired.started_at == T0
    assert (fired.value, fired.severity, fired.rule_version) == (630, "critical", 3)
    assert cleared.alert_id == fired.alert_id
    assert cleared.cleared_at == T0 + timedelta(seconds=70)


def test_a_dip_before_the_duration_resets_it() -> None:
    state = alerts.RuleState()
    assert feed(state, [(600, 0), (610, 20), (100, 25), (600, 30), (600, 50)], for_s=30) == []
    assert [e.state for e in feed(state, [(600, 60)], for_s=30)] == ["fired"]


def test_a_second_episode_gets_a_new_alert_id_and_old_readings_are_ignored() -> None:
    state = alerts.RuleState()
    first = feed(state, [(600, 0), (600, 30), (100, 40)])
    assert feed(state, [(900, 35)]) == []  # older than the last reading judged
    second = feed(state, [(600, 100), (600, 130)])
    assert [e.state for e in first + second] == ["fired", "cleared", "fired"]
    assert second[0].alert_id != first[0].alert_id
    assert second[0].alert_id == alerts.alert_id("gas-above-500", "esp32-1", 2)


def test_state_survives_encoding() -> None:
    state = alerts.DeviceFlowState(positions={"0": (5, 1)}, rules={"r": alerts.RuleState()})
    feed(state.rules["r"], [(600, 0), (600, 30)])
    again = alerts.decode_state(alerts.encode_state(state))
    assert again == state
    assert feed(again.rules["r"], [(600, 40)]) == []  # still active: no second fire


@pytest.mark.parametrize(
    ("utc", "zone", "inside"),
    [
        ("2026-11-20T23:30:00", "UTC", True),
        ("2026-11-20T05:59:00", "UTC", True),
        ("2026-11-20T06:00:00", "UTC", False),
        ("2026-11-20T12:00:00", "UTC", False),
        ("2026-11-20T12:00:00", "Asia/Tokyo", False),  # 21:00 there: not yet
        ("2026-11-20T13:30:00", "Asia/Tokyo", True),  # 22:30 there
        ("2026-11-20T23:30:00", "Asia/Tokyo", False),  # 08:30 there
    ],
)
def test_schedule_window_in_the_devices_zone(utc: str, zone: str, inside: bool) -> None:
    ts = datetime.fromisoformat(utc).replace(tzinfo=UTC)
    assert in_schedule(Schedule(start="22:00", end="06:00"), ts, zone) is inside


def test_schedule_days_belong_to_the_night_they_start() -> None:
    friday_night = Schedule(start="22:00", end="06:00", days=["fri"])
    saturday_3am = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)  # 2026-11-21 is a Saturday
    friday_3am = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    assert in_schedule(friday_night, saturday_3am, "UTC")
    assert not in_schedule(friday_night, friday_3am, "UTC")


def test_presence_rule_fires_only_after_hours_in_the_device_zone() -> None:
    presence = examples()["presence-after-hours"]
    compiled = compile_flow(
        FlowDocument(
            flow_id="p", version=1, enabled=True, definition=presence, created_at=T0, updated_at=T0
        )
    )
    assert compiled.alert is not None
    rule_ = alerts.Rule("p", 1, compiled.name, compiled.alert)

    def run(ts: datetime, zone: str, presence_seen: bool, state: alerts.RuleState) -> str | None:
        view = ReadingView(
            event_id=f"e-{ts.timestamp()}",
            device_id="d",
            ts=ts,
            sensors={"ld2410": {"presence": presence_seen}},
            metadata=None,
            device={"id": "d", "timezone": zone},
        )
        signal = compiled.run(view).alert
        assert signal is not None
        event = alerts.step(state, rule_, alerts.Reading("d", view.event_id, ts), signal, T0)
        return None if event is None else event.state

    noon_utc = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert run(noon_utc, "UTC", True, alerts.RuleState()) is None  # business hours
    state = alerts.RuleState()
    assert run(noon_utc, "Pacific/Kiritimati", True, state) == "fired"  # 02:00 there (UTC+14)
    assert run(noon_utc + timedelta(minutes=1), "Pacific/Kiritimati", True, state) is None
    assert run(noon_utc + timedelta(minutes=2), "Pacific/Kiritimati", False, state) == "cleared"


def test_alert_events_are_json_with_the_documented_fields() -> None:
    state = alerts.RuleState()
    (fired,) = feed(state, [(600, 0), (600, 30)])
    body = msgspec.json.decode(msgspec.json.encode(fired))
    assert {
        "alert_id", "rule_id", "rule_version", "device_id", "severity", "state", "started_at",
        "fired_at", "value", "event_id", "detected_at", "schema_version",
    } <= set(body)  # fmt: skip
