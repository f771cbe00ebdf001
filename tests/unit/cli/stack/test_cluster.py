"""Three KRaft brokers: settings that follow the broker count, each node's ports, files and
server.properties (nothing is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.stack import kafka, manager
from cli.stack.errors import StackError
from schemas.settings import KafkaSettings, Settings, StackSettings

CLUSTER = "127.0.0.1:29092,127.0.0.1:29094,127.0.0.1:29096"


def _props(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    pairs = (line.split("=", 1) for line in lines if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _cluster(home: Path, **kafka_fields: object) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=CLUSTER, **kafka_fields),
        stack=StackSettings(home=home, kafka_brokers=3, kafka_controller_port=29093),
    )


def test_replication_follows_the_broker_count_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (Settings().kafka.replication_factor, Settings().kafka.min_insync_replicas) == (1, 1)
    monkeypatch.setenv("FLEET_STACK__KAFKA_BROKERS", "3")
    derived = Settings().kafka
    assert (derived.replication_factor, derived.min_insync_replicas) == (3, 2)
    assert derived.bootstrap_servers == "127.0.0.1:9092,127.0.0.1:9094,127.0.0.1:9096"
    monkeypatch.setenv("FLEET_KAFKA__REPLICATION_FACTOR", "2")
    assert (Settings().kafka.replication_factor, Settings().kafka.min_insync_replicas) == (2, 1)
    monkeypatch.setenv("FLEET_KAFKA__MIN_INSYNC_REPLICAS", "2")
    assert Settings().kafka.min_insync_replicas == 2


def test_models_given_in_code_derive_the_same(tmp_path: Path) -> None:
    kafka_settings = _cluster(tmp_path).kafka
    assert (kafka_settings.replication_factor, kafka_settings.min_insync_replicas) == (3, 2)
    assert kafka_settings.bootstrap_servers == CLUSTER  # given: kept


def test_refused_broker_counts_and_replicas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEET_STACK__KAFKA_BROKERS", "2")
    with pytest.raises(ValueError, match="KAFKA_BROKERS is 1 or 3"):
        Settings()
    monkeypatch.delenv("FLEET_STACK__KAFKA_BROKERS")
    monkeypatch.setenv("FLEET_KAFKA__MIN_INSYNC_REPLICAS", "2")
    with pytest.raises(ValueError, match="MIN_INSYNC_REPLICAS"):
        Settings()


def test_three_nodes_have_their_own_ports_names_and_data(tmp_path: Path) -> None:
    nodes = kafka.kafka_services(_cluster(tmp_path))
    assert [node.name for node in nodes] == ["kafka-1", "kafka-2", "kafka-3"]
    assert [node.ports for node in nodes] == [(29092, 29093), (29094, 29095), (29096, 29097)]
    assert len({node.data for node in nodes}) == 3
    assert len({node.pid_file for node in nodes}) == 3
    assert {node.lib for node in nodes} == {tmp_path / "kafka" / "lib"}  # jars fetched once
    assert {node.cluster_file for node in nodes} == {tmp_path / "kafka-1" / "cluster-id"}


def test_each_node_renders_the_quorum_and_replication(tmp_path: Path) -> None:
    for node in kafka.kafka_services(_cluster(tmp_path)):
        node.write_properties()
        props = _props(node.properties)
        assert props["node.id"] == str(node.node.node_id)
        assert props["listeners"] == (
            f"PLAINTEXT://127.0.0.1:{node.ports[0]},CONTROLLER://127.0.0.1:{node.ports[1]}"
        )
        assert props["controller.quorum.voters"] == (
            "1@127.0.0.1:29093,2@127.0.0.1:29095,3@127.0.0.1:29097"
        )
        assert props["log.dirs"] == str(node.data)
        for key in (
            "default.replication.factor",
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "share.coordinator.state.topic.replication.factor",
        ):
            assert props[key] == "3", key
        for key in (
            "min.insync.replicas",
            "transaction.state.log.min.isr",
            "share.coordinator.state.topic.min.isr",
        ):
            assert props[key] == "2", key


def test_a_replication_factor_above_the_brokers_is_capped_for_kafkas_own_topics(
    tmp_path: Path,
) -> None:
    settings = Settings(
        kafka=KafkaSettings(replication_factor=3, min_insync_replicas=2),
        stack=StackSettings(home=tmp_path),
    )
    (node,) = kafka.kafka_services(settings)
    node.write_properties()
    props = _props(node.properties)
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["min.insync.replicas"] == "1"


def test_a_cluster_needs_an_address_per_broker(tmp_path: Path) -> None:
    settings = _cluster(tmp_path).model_copy(
        update={"kafka": KafkaSettings(bootstrap_servers="127.0.0.1:29092")}
    )
    with pytest.raises(StackError, match="lists 1 address"):
        kafka.kafka_services(settings)
    clashing = _cluster(tmp_path).model_copy(
        update={"kafka": KafkaSettings(bootstrap_servers="127.0.0.1:29093,127.0.0.1:1,127.0.0.1:2")}
    )
    with pytest.raises(StackError, match="29093"):
        kafka.kafka_services(clashing)


def test_logs_of_a_node(tmp_path: Path) -> None:
    settings = _cluster(tmp_path)
    assert manager.log_path(settings, "kafka-2") == tmp_path / "logs" / "kafka-2.log"
    assert manager.log_path(settings, "kafka") == tmp_path / "logs" / "kafka-1.log"
    single = Settings(stack=StackSettings(home=tmp_path))
    assert manager.log_path(single, "kafka") == tmp_path / "logs" / "kafka.log"
    with pytest.raises(StackError):
        manager.log_path(single, "kafka-2")
