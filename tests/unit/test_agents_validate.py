"""The validate agent through Faust's ``test_context`` (no Kafka): every raw event ends up in
exactly one output, valid ones curated and the rest dead-lettered with their reason."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

import msgspec
import pytest

from agents import validate as validate_module
from schemas.events import RawEvent, decode_curated, decode_dead_letter, encode_raw_event
from tests.factories import reading


class FakeTopic:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes | None, bytes]] = []

    async def send(self, *, key: bytes | None, value: bytes) -> asyncio.Future[None]:
        self.sent.append((key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


def raw_event(body: dict[str, object], event_id: str) -> bytes:
    payload = json.dumps(body).encode()
    event = RawEvent(
        event_id=event_id,
        device_id=str(body["device_id"]),
        received_at=datetime.now(UTC),
        source="mqtt",
        payload=msgspec.Raw(payload),
    )
    return encode_raw_event(event)


@pytest.fixture
def outputs(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeTopic, FakeTopic]:
    readings, deadletters = FakeTopic(), FakeTopic()
    monkeypatch.setattr(validate_module, "readings_topic", readings)
    monkeypatch.setattr(validate_module, "deadletter_topic", deadletters)
    return readings, deadletters


async def test_valid_event_is_curated_and_invalid_ones_dead_lettered(
    outputs: tuple[FakeTopic, FakeTopic],
) -> None:
    readings, deadletters = outputs
    good_id = "0194c0de-0000-7000-8000-00000000000a"
    good = raw_event(reading("esp32-a", 1), good_id)
    bad_rule = raw_event(
        reading("esp32-a", 2, sensors={"pir": {"motion_detected": 1}}),
        "0194c0de-0000-7000-8000-00000000000b",
    )
    garbage = b"\x00\x01 not an envelope"
    async with validate_module.validate.test_context() as agent:
        for value in (good, bad_rule, garbage):
            await agent.put(value, key=b"esp32-a")
    assert [key for key, _ in readings.sent] == [b"esp32-a"]
    curated = decode_curated(readings.sent[0][1])
    assert curated.event_id == good_id
    assert curated.sensors.pir is not None
    letters = [decode_dead_letter(value) for _, value in deadletters.sent]
    assert [letter.original for letter in letters] == [bad_rule, garbage]
    assert "sensors.pir.motion_detected" in letters[0].reason
    assert all(letter.stage == "validate" and letter.reason for letter in letters)
