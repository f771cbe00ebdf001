"""The Redis sink's batch, merged per device, and the status view read back from its hash."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import msgspec

from agents.curated import Turns
from agents.redis_sink import merge, sink_group
from agents.sink_group import SinkGroup, SinkMessage, next_offsets
from connectors.redis.status import status_from_hash
from schemas.avro_codec import AvroEncoder
from schemas.contract_wire import WIRE, encode_status
from schemas.envelopes import curated_envelope
from schemas.events import encode_curated
from schemas.settings import RedisSettings, Settings
from schemas.status import encode
from tests.clock import now
from tests.factories import raw_event, reading, status_change
from tests.pipeline_helpers import validate_event

NOW = now()


def message(topic: str, value: bytes, offset: int = 0, partition: int = 0) -> SinkMessage:
    return SinkMessage(topic, partition, offset, None, value, 0.0, None)


async def test_a_batch_is_merged_per_device_latest_by_timestamp() -> None:
    events = [raw_event(reading("esp32-a", n)) for n in (3, 1, 2)]
    items = [encode_curated(validate_event(e, now=NOW)) for e in events]
    change = status_change("esp32-a", 1, NOW)
    batch, letters = await merge(
        [
            message("curated", curated_envelope(items)),
            message("status", encode(change)),
            message("curated", b"{broken", offset=1),
        ],
        readings_topic="curated",
        deadletter_topic="dead",
        now=NOW,
    )
    device = batch.devices["esp32-a"]
    assert len(device.items) == 3
    assert device.latest["event_id"] == events[0].event_id  # n=3 is the newest timestamp
    assert msgspec.json.decode(device.status["v:mq134.gas_concentration"]) == 10.0 + 1 / 4 * 2
    assert [c.seq for c, _ in batch.changes] == [1]
    assert len(letters.records("dead")) == 1


async def test_a_status_tombstone_deletes_the_device_and_is_no_dead_letter() -> None:
    tombstone = SinkMessage("status", 0, 7, b"esp32-gone", None, 0.0, None)
    keyless = SinkMessage("status", 0, 8, None, None, 0.0, None)
    batch, letters = await merge(
        [tombstone, keyless], readings_topic="curated", deadletter_topic="dead", now=NOW
    )
    assert batch.deleted == ["esp32-gone"]
    assert batch.changes == []
    assert len(letters.records("dead")) == 1  # a tombstone without a key names no device


def test_the_status_view_of_a_hash() -> None:
    view = status_from_hash(
        "esp32-a",
        {
            b"online": b"1",
            b"seq": b"3",
            b"last_seen": b"2026-12-01T00:00:00+00:00",
            b"v:pir.motion_detected": b"true",
            b"v:mq134.gas_concentration": b"12.5",
        },
    )
    assert view.as_json()["last_values"] == {
        "pir.motion_detected": True,
        "mq134.gas_concentration": 12.5,
    }
    assert (view.online, view.seq) == (True, 3)
    never = status_from_hash("esp32-b", {})
    assert (never.online, never.last_seen, never.last_values) == (False, None, {})


def test_offsets_stored_after_a_batch_are_one_past_the_last_per_partition() -> None:
    batch = [message("t", b"", 5), message("t", b"", 9), message("t", b"", 2, partition=1)]
    stored = {(tp.topic, tp.partition): tp.offset for tp in next_offsets(batch)}
    assert stored == {("t", 0): 10, ("t", 1): 3}


async def test_last_seen_is_the_newest_receive_time() -> None:
    older = raw_event(reading("esp32-a", 1), received_at=NOW - timedelta(seconds=5))
    newer = raw_event(reading("esp32-a", 0), received_at=NOW)
    items = [encode_curated(validate_event(e, now=NOW)) for e in (newer, older)]
    batch, _ = await merge(
        [message("curated", curated_envelope(items))],
        readings_topic="curated",
        deadletter_topic="dead",
        now=NOW,
    )
    assert batch.devices["esp32-a"].status["last_seen"] == NOW.isoformat()


async def test_status_values_are_the_last_of_each_sensor_type_even_from_older_readings() -> None:
    with_gas = reading("esp32-a", 1)
    without_gas = reading("esp32-a", 2, sensors={"pir": {"motion_detected": True}})
    events = [raw_event(with_gas), raw_event(without_gas)]
    items = [encode_curated(validate_event(e, now=NOW)) for e in events]
    batch, _ = await merge(
        [message("curated", curated_envelope(items))],
        readings_topic="curated",
        deadletter_topic="dead",
        now=NOW,
    )
    status = batch.devices["esp32-a"].status
    assert status["v:pir.motion_detected"] == b"true"  # the newer reading's pir
    assert status["v:mq134.gas_concentration"] == b"10.25"  # kept from the older reading
    assert status["v:ld2410.distance_cm"] == b"51"
    assert status["last_event_id"] == events[1].event_id


def test_the_redis_sink_consumes_by_its_flush_interval() -> None:
    settings = Settings(redis=RedisSettings(flush_interval_s=0.75))
    assert sink_group(settings)._within_s == 0.75
    postgres_like = SinkGroup(settings, "other", ["t"], 8)
    assert postgres_like._within_s == settings.worker.batch_within_s


async def test_other_tasks_run_while_a_long_batch_is_merged() -> None:
    events = [raw_event(reading("esp32-a", n)) for n in range(3)]
    items = [encode_curated(validate_event(event, now=NOW)) for event in events]
    messages = [message("curated", curated_envelope(items), offset=n) for n in range(4)]
    order: list[str] = []

    async def other_agent() -> None:
        order.append("other agent")

    waiting = asyncio.create_task(other_agent())  # ready before the merge starts
    batch, _ = await merge(
        messages, readings_topic="curated", deadletter_topic="dead", now=NOW, turn=Turns(5)
    )
    order.append("merged")
    await waiting
    assert order == ["other agent", "merged"]  # it ran during the merge, not after it
    assert len(batch.devices["esp32-a"].items) == 12


async def test_a_device_s_fields_are_its_sensors_values_as_the_curated_reading_encoded_them() -> (
    None
):
    sensors = {"lab_probe": {"n": 1.25, "b": False, "neg": -3}, "pir": {"motion_detected": True}}
    event = raw_event(reading("esp32-generic", 1, sensors=sensors))
    item = encode_curated(validate_event(event, now=NOW, unknown_sensors="generic"))
    batch, _ = await merge(
        [message("curated", curated_envelope([item]))],
        readings_topic="curated",
        deadletter_topic="dead",
        now=NOW,
    )
    status = batch.devices["esp32-generic"].status
    fields = {name: value for name, value in status.items() if name.startswith("v:")}
    assert {name: msgspec.json.decode(value) for name, value in fields.items()} == {
        "v:lab_probe.n": 1.25,
        "v:lab_probe.b": False,
        "v:lab_probe.neg": -3,
        "v:pir.motion_detected": True,
    }
    assert all(isinstance(value, bytes) for value in fields.values())


async def test_an_avro_status_record_is_applied_and_published_as_its_json() -> None:
    """Pub/sub subscribers get the StatusChange JSON whatever the topic's format."""
    change = status_change("esp32-a", 3, NOW)
    WIRE.install({"device-status": AvroEncoder("device-status", 21)}, None)
    try:
        value = encode_status(change)
    finally:
        WIRE.reset()
    assert value[:1] == b"\x00"
    batch, letters = await merge(
        [message("status", value)], readings_topic="curated", deadletter_topic="dead", now=NOW
    )
    assert batch.changes == [(change, encode(change))] and not letters.by_topic
