"""A secure-mode stack of the tests' own: Kafka, Postgres, Redis, S3Proxy and Apicurio started
by the stack code (``cli/stack/private.py``: the same configuration as
``FLEET_STACK__SECURE=true fleetstream stack up``) on free ports under a temporary stack home,
with its own CA, SCRAM principals and ACLs, TLS only; stopped by their pids afterwards. The
shared stack's services are never touched (only its jars and builds are copied, to skip Maven).
One stack serves every secure test (the session fixture ``secure_stack``), and the helpers
here probe its hops."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
)
from confluent_kafka.admin import AdminClient

from cli.stack.certs import Pki
from cli.stack.kafka import kafka_services
from cli.stack.kafka_security import principal_kafka
from cli.stack.private import private_stack
from connectors.kafka.admin import ensure_topics
from connectors.kafka.security import client_config
from connectors.postgres import migrate
from schemas.settings import Settings
from streams.topology import topic_specs

BROKER_HEAP = "384m"
SERVICES = ("kafka", "postgres", "redis", "s3proxy", "apicurio")


def start_secure_stack(stack_settings: Settings, home: Path) -> Iterator[Settings]:
    """Secure mode's Kafka (SASL_SSL, ACLs), Postgres, Redis, S3Proxy and Apicurio (TLS only)
    of the tests' own under ``home``, the database migrated; settings as the stack's super user
    sees them (clients on verify-full, Redis TLS, https). Stopped by their pids afterwards."""
    say = lambda line: print(f"secure stack: {line}")  # noqa: E731
    with private_stack(
        stack_settings, home, SERVICES, secure=True, progress=say, kafka_heap=BROKER_HEAP
    ) as settings:
        migrate.upgrade(settings.postgres)
        yield settings


def prepare_pipeline(settings: Settings) -> None:
    """Grant the ACLs of ``settings``' (uuid) topic names and app id, and create the topics as
    the super user, as ``fleetstream setup`` does in secure mode."""
    kafka_services(settings)[0].after_healthy(lambda line: print(f"secure broker: {line}"))
    admin = principal_kafka(settings, "admin")
    ensure_topics(settings.kafka.bootstrap_servers, topic_specs(settings), kafka=admin)


def as_principal(settings: Settings, principal: str) -> Settings:
    """``settings`` whose Kafka clients connect as ``principal`` (SASL_SSL, SCRAM)."""
    return settings.model_copy(update={"kafka": principal_kafka(settings, principal)})


def ca_context(settings: Settings) -> ssl.SSLContext:
    """A client context trusting the secure stack's CA only."""
    return ssl.create_default_context(cafile=str(Pki.of_home(settings.stack.home).ca_cert))


def with_certificate(settings: Settings, name: str) -> tuple[str, str]:
    """The certificate and key files of ``name`` from the secure stack's CA."""
    pki = Pki.of_home(settings.stack.home)
    return str(pki.cert(name)), str(pki.key(name))


def kafka_errors(config: dict[str, Any], timeout_s: float = 20.0) -> list[KafkaError]:
    """What the broker answers an admin client of ``config`` asking for metadata: the errors
    its error callback saw (empty when it was let in)."""
    seen: list[KafkaError] = []
    full: dict[str, Any] = {**config, "log_level": 0, "error_cb": seen.append}
    admin = AdminClient(full)
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException as exc:
        for _ in range(10):  # the error callback runs on poll: collect what it has to say
            admin.poll(0.5)
        seen.append(exc.args[0])
    return seen


def produce_error(settings: Settings, principal: str, topic: str) -> KafkaError | None:
    """Produce one record to ``topic`` as ``principal``: the delivery error (None: delivered)."""
    kafka = principal_kafka(settings, principal)
    producer = Producer(client_config(kafka.bootstrap_servers, kafka, **{"log_level": 0}))
    outcome: list[KafkaError | None] = []
    producer.produce(topic, b"probe", on_delivery=lambda err, _msg: outcome.append(err))
    producer.flush(30)
    assert outcome, "no delivery report within 30 s"
    return outcome[0]


def fetch_error(settings: Settings, principal: str, topic: str) -> KafkaError | None:
    """Read ``topic`` from its start as ``principal``, subscribed in a group of its own: the
    first error, or None once a record or a partition's end came without one."""
    kafka = principal_kafka(settings, principal)
    # A group id inside the principal's reader groups: the refusal then is the topic's alone.
    group = f"{'analytics' if principal == 'analytics' else 'fleetstream'}-probe-{uuid.uuid4()}"
    config = {
        "group.id": group,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "log_level": 0,
    }
    consumer = Consumer(client_config(kafka.bootstrap_servers, kafka, **config))
    consumer.subscribe([topic])
    try:
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is None:
                continue
            error = message.error()
            if error is None or error.code() == KafkaError._PARTITION_EOF:
                return None
            return error
        raise AssertionError(f"{principal} got neither a record nor an error from {topic}")
    finally:
        consumer.close()
