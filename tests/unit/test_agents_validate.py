"""The validate agent through Faust's ``test_context`` (no Kafka): every raw event ends up in
exactly one output, valid ones curated and the rest dead-lettered with their reason."""

from __future__ import annotations

from typing import Any

import pytest

from agents import validate as validate_module
from schemas.events import decode_curated, decode_dead_letter, encode_raw_event
from tests.factories import raw_event, reading
from tests.unit.fakes import FakeKafkaProducer


def raw_bytes(body: dict[str, Any], event_id: str) -> bytes:
    return encode_raw_event(raw_event(body, event_id=event_id, source="mqtt"))


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> FakeKafkaProducer:
    fake = FakeKafkaProducer()
    monkeypatch.setattr(validate_module, "output_producer", lambda: fake)
    return fake


async def test_valid_event_is_curated_and_invalid_ones_dead_lettered(
    producer: FakeKafkaProducer,
) -> None:
    good_id = "0194c0de-0000-7000-8000-00000000000a"
    good = raw_bytes(reading("esp32-a", 1), good_id)
    bad_rule = raw_bytes(
        reading("esp32-a", 2, sensors={"pir": {"motion_detected": 1}}),
        "0194c0de-0000-7000-8000-00000000000b",
    )
    garbage = b"\x00\x01 not an envelope"
    async with validate_module.validate.test_context() as agent:
        for value in (good, bad_rule, garbage):
            await agent.put(value, key=b"esp32-a")
    assert producer.keys(validate_module.READINGS) == [b"esp32-a"]
    curated = decode_curated(producer.values(validate_module.READINGS)[0])
    assert curated.event_id == good_id
    assert curated.sensors.pir is not None
    letters = [decode_dead_letter(v) for v in producer.values(validate_module.DEADLETTER)]
    assert [letter.original for letter in letters] == [bad_rule, garbage]
    assert "sensors.pir.motion_detected" in letters[0].reason
    assert all(letter.stage == "validate" and letter.reason for letter in letters)
