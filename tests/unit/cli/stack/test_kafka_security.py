"""Secure-mode Kafka: the broker's security lines, SCRAM principals and least-privilege ACLs."""

from __future__ import annotations

import stat
from pathlib import Path

from confluent_kafka.admin._acl import AclBinding, AclOperation
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

from cli.stack import kafka_security
from cli.stack.kafka import Kafka
from schemas.settings import Settings, StackSettings


def _settings(home: Path, *, secure: bool = True) -> Settings:
    return Settings(stack=StackSettings(home=home, secure=secure))


def _properties(text: str) -> dict[str, str]:
    joined = text.replace("\\\n", "")
    pairs = (line.split("=", 1) for line in joined.splitlines() if "=" in line and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def _can(bindings: list[AclBinding], principal: str, operation: AclOperation, topic: str) -> bool:
    def covers(binding: AclBinding) -> bool:
        if binding.restype != ResourceType.TOPIC:
            return False
        if binding.resource_pattern_type == ResourcePatternType.PREFIXED:
            return topic.startswith(binding.name)
        return topic == binding.name

    return any(
        b.principal == f"User:{principal}"
        and b.operation in (operation, AclOperation.ALL)
        and covers(b)
        for b in bindings
    )


def test_passwords_are_made_once_and_kept_private(tmp_path: Path) -> None:
    first = kafka_security.passwords(tmp_path)
    assert set(first) == set(kafka_security.PRINCIPALS)
    assert len(set(first.values())) == len(first)
    assert kafka_security.passwords(tmp_path) == first
    mode = kafka_security.users_file(tmp_path).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_secure_broker_lines_override_the_plain_listeners(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    node = Kafka(settings)
    node.write_properties()
    props = _properties(node.properties.read_text())
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SSL"
    assert props["listener.name.controller.ssl.client.auth"] == "required"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["allow.everyone.if.no.acl.found"] == "false"
    admin_password = kafka_security.passwords(tmp_path)["admin"]
    assert (
        f'password="{admin_password}"'
        in props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"]
    )
    assert node.data.name == "data-secure"


def test_plain_mode_renders_no_security_lines(tmp_path: Path) -> None:
    node = Kafka(_settings(tmp_path, secure=False))
    node.write_properties()
    props = _properties(node.properties.read_text())
    assert props["listeners"].startswith("PLAINTEXT://")
    assert "authorizer.class.name" not in props
    assert not kafka_security.users_file(tmp_path).exists()
    assert node.data.name == "data"


def test_scram_credentials_for_every_principal_at_format_time(tmp_path: Path) -> None:
    args = kafka_security.scram_format_args(tmp_path)
    values = args[1::2]
    assert args[0::2] == ["--add-scram"] * len(kafka_security.PRINCIPALS)
    for name, password in kafka_security.passwords(tmp_path).items():
        assert f"SCRAM-SHA-512=[name={name},password={password}]" in values


def test_acls_give_each_principal_only_what_it_needs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    topics, app = settings.topics, settings.worker.app_id
    bindings = kafka_security.acl_bindings(settings)
    changelog = f"{app}-status-changelog"
    write, read = AclOperation.WRITE, AclOperation.READ
    assert _can(bindings, "api", write, topics.raw)
    assert _can(bindings, "api", write, topics.media)
    assert _can(bindings, "api", read, topics.devices)
    assert not _can(bindings, "api", read, changelog)
    assert not _can(bindings, "api", write, topics.curated)
    assert _can(bindings, "worker", write, changelog)
    assert _can(bindings, "worker", read, topics.raw)
    assert _can(bindings, "worker", write, topics.readings)
    assert _can(bindings, "bridge", write, topics.raw)
    assert not _can(bindings, "bridge", write, topics.devices)
    assert _can(bindings, "analytics", read, topics.readings)
    assert not _can(bindings, "analytics", read, topics.raw)
    assert not _can(bindings, "analytics", write, topics.raw)
    # Nobody but the worker writes a changelog; the super user needs no ACL.
    writers = {
        b.principal
        for b in bindings
        if b.restype == ResourceType.TOPIC and b.name.startswith(f"{app}-")
    }
    assert writers == {"User:worker"}
    assert not [b for b in bindings if b.principal == "User:admin"]
