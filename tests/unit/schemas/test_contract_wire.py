"""Status, alert, rollup and dead-letter values: Avro once installed, JSON otherwise, both read."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from agents.deadletters import dead_letter
from agents.flows_runner import FlowRunner
from agents.status import _record as status_record
from schemas.avro_codec import AvroEncoder, Contract, framed_schema_id, parsed_schema
from schemas.avro_compat import history
from schemas.contract_wire import (
    JSON_CAPABLE,
    WIRE,
    alert_event_datum,
    decode_alert,
    decode_dead_letter,
    decode_rollup_record,
    decode_status,
    encode_alert,
    encode_dead_letter,
    encode_rollup,
    encode_status,
)
from schemas.envelopes import curated_envelope
from schemas.errors import FieldError
from schemas.events import DeadLetter
from schemas.flows import AlertEvent
from schemas.status import Rollup, StatusChange
from tests.clock import now
from tests.unit.agents.test_flows import GAS, Message, flowset, item, nothing

NOW = now().replace(microsecond=123456)
EVENT_ID = "019ab000-0000-7000-8000-000000000001"
IDS: dict[Contract, int] = {"device-status": 11, "alerts": 12, "readings-1m": 13, "deadletter": 14}

CHANGE = StatusChange(
    device_id="d1", seq=3, online=True, reason="reading", changed_at=NOW, last_seen=NOW,
    timeout_s=300,
)  # fmt: skip
ROLLUP = Rollup(
    device_id="d1", field="mq134.gas_concentration", window_start=NOW.replace(microsecond=0),
    window_end=NOW.replace(microsecond=0) + timedelta(minutes=1), count=3, min=1.0, max=3.0,
    sum=6.0, mean=2.0,
)  # fmt: skip
LETTER = DeadLetter(
    stage="validate", reason="bad", errors=[FieldError(("items", 3, "x"), "no", "missing")],
    error_type="ValidationFailure", source_topic="fleet.raw.v1", partition=1, offset=7,
    key="d1", original=b"\x00raw", failed_at=NOW, event_id=EVENT_ID, item=3,
)  # fmt: skip
ALERT = AlertEvent(
    alert_id=EVENT_ID, rule_id="gas-high", rule_version=2, rule_name="Gas high", device_id="d1",
    severity="critical", state="cleared", started_at=NOW - timedelta(minutes=2),
    fired_at=NOW - timedelta(minutes=1), cleared_at=NOW, value=612.5, message="612 ppm",
    event_id="019ab000-0000-7000-8000-000000000002", detected_at=NOW + timedelta(seconds=1),
)  # fmt: skip

CASES: list[tuple[Contract, Any, Any, Any]] = [
    ("device-status", CHANGE, encode_status, decode_status),
    ("alerts", ALERT, encode_alert, decode_alert),
    ("readings-1m", ROLLUP, encode_rollup, decode_rollup_record),
    ("deadletter", LETTER, encode_dead_letter, decode_dead_letter),
]


@pytest.fixture
def avro() -> Iterator[None]:
    WIRE.install({c: AvroEncoder(c, IDS[c]) for c in JSON_CAPABLE}, None)
    yield
    WIRE.reset()


@pytest.mark.parametrize(("contract", "value", "encode", "decode"), CASES)
@pytest.mark.usefixtures("avro")
def test_installed_contracts_are_framed_with_their_id_and_read_back_whole(
    contract: Contract, value: Any, encode: Any, decode: Any
) -> None:
    encoded = encode(value)
    assert framed_schema_id(encoded) == IDS[contract]
    assert decode(encoded) == value


@pytest.mark.parametrize(("contract", "value", "encode", "decode"), CASES)
def test_without_install_values_are_the_json_contract(
    contract: Contract, value: Any, encode: Any, decode: Any
) -> None:
    encoded = encode(value)
    assert encoded == msgspec.json.encode(value), contract
    assert decode(encoded) == value


@pytest.mark.parametrize(("contract", "value", "encode", "decode"), CASES)
def test_readers_take_both_formats_whichever_this_process_writes(
    contract: Contract, value: Any, encode: Any, decode: Any
) -> None:
    """A topic that switches keeps its older values: JSON before, Avro after (or back)."""
    as_json = encode(value)
    WIRE.install({contract: AvroEncoder(contract, IDS[contract])}, None)
    try:
        as_avro = encode(value)
        assert as_avro[:1] == b"\x00" and decode(as_json) == decode(as_avro) == value
    finally:
        WIRE.reset()
    assert decode(as_avro) == value


def test_only_the_installed_contracts_are_avro() -> None:
    WIRE.install({"deadletter": AvroEncoder("deadletter", 14)}, None)
    try:
        assert encode_dead_letter(LETTER)[:1] == b"\x00"
        assert encode_status(CHANGE) == msgspec.json.encode(CHANGE)
        assert encode_alert(ALERT)[:1] == b"{"
    finally:
        WIRE.reset()


def test_a_value_written_with_an_older_schema_is_read_with_the_schema_its_id_names() -> None:
    """An alert written with alerts v1 (another id), read through the resolver: the fields v2
    added take their defaults, the missing times the firing time."""
    v1_text = history("alerts")[0].read_text("utf-8")
    asked: list[int] = []

    def resolve(schema_id: int) -> str:
        asked.append(schema_id)
        return v1_text

    v1 = AvroEncoder("alerts", 5)
    v1._schema = msgspec.json.decode(v1_text)
    datum = {k: v for k, v in alert_event_datum(ALERT).items() if k in _names(v1_text)}
    datum |= {"field": "mq134.gas_concentration", "threshold": 500.0}
    WIRE.install({"alerts": AvroEncoder("alerts", 12)}, resolve)
    try:
        old = decode_alert(v1.encode(datum))
        decode_alert(v1.encode(datum))
    finally:
        WIRE.reset()
    assert asked == [5]  # asked once, then kept
    assert old.rule_name == "" and old.started_at == old.fired_at == ALERT.fired_at
    assert old.detected_at == ALERT.fired_at and old.value == ALERT.value
    assert (old.alert_id, old.event_id, old.state) == (ALERT.alert_id, ALERT.event_id, "cleared")


def _names(schema_text: str) -> set[str]:
    return {field["name"] for field in json.loads(schema_text)["fields"]}


@pytest.mark.parametrize(("contract", "value", "encode", "decode"), CASES)
@pytest.mark.usefixtures("avro")
def test_a_broken_framed_value_is_a_decode_error(
    contract: Contract, value: Any, encode: Any, decode: Any
) -> None:
    encoded = encode(value)
    with pytest.raises(msgspec.DecodeError, match=contract):
        decode(encoded[: len(encoded) // 2])


def test_every_alert_field_is_in_the_alerts_schema() -> None:
    schema_fields = {field["name"] for field in parsed_schema("alerts")["fields"]}
    assert set(AlertEvent.__struct_fields__) <= schema_fields


# --- the places that write these topics use the wire -------------------------------------


@pytest.mark.usefixtures("avro")
def test_status_transitions_alerts_and_dead_letters_of_the_agents_are_framed() -> None:
    assert framed_schema_id(status_record(CHANGE).value or b"") == IDS["device-status"]
    letter = dead_letter("validate", Message(b"{bad"), ValueError("bad"), NOW)
    assert framed_schema_id(letter.value or b"") == IDS["deadletter"]
    assert decode_dead_letter(letter.value or b"").original == b"{bad"
    not_a_uuid = msgspec.structs.replace(LETTER, event_id="d1-0")
    assert decode_dead_letter(encode_dead_letter(not_a_uuid)).event_id is None

    items = [item("d1", 600, 10 * n, event_id=str(uuid.uuid4())) for n in range(4)]
    message = Message(curated_envelope(items, [(0, 5, n) for n in range(4)]))
    result = FlowRunner("alerts", "deadletters").run_batch([message], flowset(GAS), nothing, NOW)
    (record,) = result.outputs.records("alerts")
    assert framed_schema_id(record.value or b"") == IDS["alerts"]
    assert decode_alert(record.value or b"").state == "fired"
