"""Topic specs: names and partitions from the settings, shapes fixed per kind of topic."""

from __future__ import annotations

from schemas.settings import Settings
from streams.topology import DEADLETTER_MAX_BYTES, ENVELOPE_TOPIC_MAX_BYTES, topic_specs


def test_every_project_topic_has_a_spec_with_the_configured_partitions() -> None:
    settings = Settings()
    settings = settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"partitions": 5})}
    )
    specs = {spec.name: spec for spec in topic_specs(settings)}
    assert set(specs) == {
        "fleet.raw.v1",
        "fleet.curated.v1",
        "fleet.readings.v1",
        "fleet.deadletter.v1",
        "fleet.alerts.v1",
        "fleet.devices.v1",
        "fleet.flows.v1",
        "fleet.device-status.v1",
        "fleet.readings-1m.v1",
        "fleet.media.v1",
        "fleet.crashes.v1",
    }
    assert {spec.partitions for spec in specs.values()} == {5}


def test_registries_are_compacted_and_events_expire() -> None:
    specs = {spec.name: spec for spec in topic_specs(Settings())}
    compacted = ("fleet.devices.v1", "fleet.flows.v1", "fleet.device-status.v1", "fleet.crashes.v1")
    for registry in compacted:
        assert specs[registry].config["cleanup.policy"] == "compact"
    for events in (
        "fleet.readings.v1",
        "fleet.alerts.v1",
        "fleet.readings-1m.v1",
        "fleet.media.v1",
    ):
        assert specs[events].config == {
            "cleanup.policy": "delete",
            "retention.ms": str(7 * 24 * 3600 * 1000),
        }
    # a sink may be away as long as the raw topic keeps what it would need to catch up
    assert specs["fleet.curated.v1"].config["retention.ms"] == str(7 * 24 * 3600 * 1000)


def test_envelope_topics_take_records_larger_than_an_envelope() -> None:
    settings = Settings()
    specs = {spec.name: spec for spec in topic_specs(settings)}
    for name in ("fleet.raw.v1", "fleet.curated.v1"):
        assert specs[name].config["max.message.bytes"] == str(ENVELOPE_TOPIC_MAX_BYTES)
        assert specs[name].config["cleanup.policy"] == "delete"
    assert settings.kafka.envelope_max_bytes < ENVELOPE_TOPIC_MAX_BYTES


def test_dead_letters_have_room_for_the_encoded_original() -> None:
    specs = {spec.name: spec for spec in topic_specs(Settings())}
    deadletter = specs["fleet.deadletter.v1"]
    assert deadletter.config["max.message.bytes"] == str(DEADLETTER_MAX_BYTES)
    assert deadletter.config["retention.ms"] == str(30 * 24 * 3600 * 1000)
    # base64 grows the original by 4/3; the largest accepted body must still fit.
    assert Settings().api.max_body_bytes * 4 // 3 + 4096 < DEADLETTER_MAX_BYTES
