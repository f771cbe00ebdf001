"""Kafka config rendering, cluster ids and the jar marker (nothing is started)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from cli.stack import kafka
from cli.stack.kafka import Kafka
from schemas.settings import KafkaSettings, Settings, StackSettings


def _props(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def test_server_properties_from_template() -> None:
    node = kafka.Node(1, broker_port=19092, controller_port=19093)
    text = kafka.render_server_properties(
        kafka.TEMPLATE.read_text(), node=node, voters="1@127.0.0.1:19093", data_dir=Path("/d")
    )
    props = _props(text)
    assert props["process.roles"] == "broker,controller"
    assert props["node.id"] == "1"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "PLAINTEXT://127.0.0.1:19092"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:19093"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["log.dirs"] == "/d"
    assert props["auto.create.topics.enable"] == "false"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    for key in (
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
        "transaction.state.log.min.isr",
        "share.coordinator.state.topic.replication.factor",
        "share.coordinator.state.topic.min.isr",
        "default.replication.factor",
        "min.insync.replicas",
    ):
        assert props[key] == "1", key
    assert props["unclean.leader.election.enable"] == "false"
    assert "$" not in text


def test_template_placeholders_are_all_required() -> None:
    with pytest.raises(KeyError):
        kafka.render_server_properties(
            "x=${unknown}", node=kafka.Node(1, 1, 2), voters="1@127.0.0.1:2", data_dir=Path("/d")
        )


def test_service_uses_ports_and_paths_from_settings(tmp_path: Path) -> None:
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:29092"),
        stack=StackSettings(home=tmp_path, kafka_controller_port=29093),
    )
    service = Kafka(settings)
    assert service.ports == (29092, 29093)
    assert service.address == "127.0.0.1:29092"
    assert service.data == tmp_path / "kafka" / "data"
    assert service.signature.markers == ("kafka.Kafka", str(service.properties))


def test_cluster_id_format() -> None:
    for _ in range(200):
        cluster_id = kafka.new_cluster_id()
        assert len(cluster_id) == 22
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_jars_ready_needs_marker_and_broker_jar(tmp_path: Path) -> None:
    lib = tmp_path / "lib"
    assert not kafka.JARS.ready(lib, "4.1.1")
    lib.mkdir()
    (lib / "kafka_2.13-4.1.1.jar").write_bytes(b"jar")
    assert not kafka.JARS.ready(lib, "4.1.1")  # Maven did not finish: no marker
    (lib / kafka.JARS.marker).write_text("4.1.1\n")
    assert kafka.JARS.ready(lib, "4.1.1")
    assert not kafka.JARS.ready(lib, "4.2.0")
