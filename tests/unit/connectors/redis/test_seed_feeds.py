"""The seeds' Redis readers: seed 002's ``sensor-events`` messages, seed 001's queue name, and
the Redis sink's commands with those profiles on."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from connectors.redis.keys import RedisKeys
from connectors.redis.seed_feeds import (
    SEED001_QUEUE,
    SEED002_CHANNEL,
    SeedFeeds,
    queue_name,
    seed002_event,
    seed_feeds,
)
from connectors.redis.wire import RedisPipe
from connectors.redis.writer import DeviceReadings, RedisBatch, RedisWriter
from schemas.events import CuratedReading, encode_curated
from schemas.settings import CompatSettings, RedisSettings, Settings

TS = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def curated(device_id: str = "esp32-a", **enriched: object) -> bytes:
    reading = CuratedReading(
        event_id=str(uuid.UUID(int=7)),
        device_id=device_id,
        ts=TS,
        received_at=TS + timedelta(seconds=1),
        source="http",
        sensors=msgspec.Raw(b'{"mq134":{"gas_concentration":612.5}}'),
        **enriched,  # type: ignore[arg-type]
    )
    return encode_curated(reading)


def settings(seeds: str = "", legacy_list: str = "") -> Settings:
    return Settings(
        compat=CompatSettings(seeds=seeds), redis=RedisSettings(legacy_list=legacy_list)
    )


def test_a_seed002_message_is_the_reading_with_the_fields_its_readers_use() -> None:
    item = curated(device_name="Lobby", location={"building": "A"}, tags=["roof"])
    message = json.loads(seed002_event(item))
    # What seed 002's alert service reads: data.sensors.mq134.gas_concentration, data.timestamp,
    # data.device_metadata?.location, data.device_id.
    assert message["sensors"]["mq134"]["gas_concentration"] == 612.5
    assert message["device_id"] == "esp32-a"
    assert message["timestamp"] == message["ts"] == "2026-12-01T12:00:00Z"
    assert message["device_metadata"] == {
        "location": {"building": "A"},
        "name": "Lobby",
        "tags": ["roof"],
    }
    canonical = json.loads(item)
    assert {k: message[k] for k in canonical} == canonical


def test_a_device_the_registry_does_not_know_has_empty_device_metadata() -> None:
    message = json.loads(seed002_event(curated()))
    assert message["device_metadata"] == {}


def test_an_item_that_cannot_be_read_goes_out_unchanged() -> None:
    assert seed002_event(b'{"no":"ts"}') == b'{"no":"ts"}'


def test_one_message_per_reading_on_the_seed_channel() -> None:
    items = [curated("a"), curated("b"), curated("c")]
    commands = SeedFeeds()(items)
    assert [c[:2] for c in commands] == [("PUBLISH", SEED002_CHANNEL)] * 3
    assert [json.loads(c[2])["device_id"] for c in commands] == ["a", "b", "c"]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("seeds", "legacy", "queue"),
    [
        ("", "", ""),
        ("002", "", ""),
        ("001", "", SEED001_QUEUE),
        ("001,002", "", SEED001_QUEUE),
        ("001", "mine", "mine"),
        ("", "mine", "mine"),
    ],
)
def test_seed001s_queue_is_the_sink_list_unless_one_is_named(
    seeds: str, legacy: str, queue: str
) -> None:
    assert queue_name(settings(seeds, legacy)) == queue


def test_the_channel_only_with_seed002s_profile() -> None:
    assert seed_feeds(settings("001")) is None
    assert seed_feeds(settings("")) is None
    assert isinstance(seed_feeds(settings("2")), SeedFeeds)


def test_the_sink_publishes_each_reading_and_pushes_to_a_bounded_queue() -> None:
    on = settings("001,002")
    writer = RedisWriter(
        RedisPipe("127.0.0.1", 1), RedisKeys("p"), queue_name(on), 50, seed_feeds(on)
    )
    items = [curated("a"), curated("a"), curated("b")]
    batch = RedisBatch(
        {
            "a": DeviceReadings("a", items=items[:2]),
            "b": DeviceReadings("b", items=items[2:]),
        }
    )
    commands = writer.commands(batch)
    assert ("LPUSH", SEED001_QUEUE, *items) in commands
    assert ("LTRIM", SEED001_QUEUE, 0, 49) in commands
    published = [c for c in commands if c[:2] == ("PUBLISH", SEED002_CHANNEL)]
    assert len(published) == len(items)


def test_without_profiles_the_sink_writes_no_seed_feed() -> None:
    off = settings()
    writer = RedisWriter(
        RedisPipe("127.0.0.1", 1), RedisKeys("p"), queue_name(off), 50, seed_feeds(off)
    )
    commands = writer.commands(RedisBatch({"a": DeviceReadings("a", items=[curated("a")])}))
    assert not [c for c in commands if SEED002_CHANNEL in c or SEED001_QUEUE in c]
