"""Kafka in secure mode: SCRAM principals, the broker's security properties, and the ACLs.

Every client listener is ``SASL_SSL`` with SCRAM-SHA-512; the controller listener is TLS with
client certificates (the nodes show the ``kafka`` certificate of the local CA, mapped to the
principal ``User:kafka``). The ``StandardAuthorizer`` refuses whatever no ACL allows.

Principals (their passwords are made once, kept 0600 in ``<home>/pki/kafka-users.json``, and
given to the broker at format time with ``--add-scram``): ``admin`` (super user: the CLI, topic
set-up, inter-broker), ``api``, ``worker``, ``bridge`` (the MQTT front and bridge) and
``analytics`` (reads the analytics topics only). :func:`acl_bindings` says what each may do.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from string import Template
from typing import Final

# confluent_kafka.admin re-exports these without __all__; mypy wants the defining modules.
from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
from pydantic import SecretStr

from cli.stack.certs import Pki
from connectors.kafka.security import security_config
from schemas.settings import KafkaSettings, Settings
from streams.topology import topic_specs

ADMIN: Final = "admin"
PRINCIPALS: Final[tuple[str, ...]] = (ADMIN, "api", "worker", "bridge", "analytics")
MECHANISM: Final = "SCRAM-SHA-512"
#: The CN of the nodes' certificate, their principal on the controller listener.
NODE_PRINCIPAL: Final = "kafka"

SECURE_PROPERTIES: Final = Template(
    """
# --- secure mode (FLEET_STACK__SECURE): these lines override the plain listeners above ---
listeners=SASL_SSL://127.0.0.1:${broker_port},CONTROLLER://127.0.0.1:${controller_port}
advertised.listeners=SASL_SSL://127.0.0.1:${broker_port}
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=${mechanism}
sasl.mechanism.inter.broker.protocol=${mechanism}
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=\
org.apache.kafka.common.security.scram.ScramLoginModule required \
username="${admin}" password="${admin_password}";
ssl.keystore.type=PEM
ssl.keystore.location=${keystore}
ssl.truststore.type=PEM
ssl.truststore.location=${ca_file}
# Controllers and brokers show each other the nodes' certificate (mutual TLS).
listener.name.controller.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+),.*$$/$$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:${admin};User:${node}
"""
)


def users_file(home: Path) -> Path:
    return Pki.of_home(home).root / "kafka-users.json"


def passwords(home: Path) -> dict[str, str]:
    """Each principal's SCRAM password, made on first use and kept (0600) in the stack home."""
    path = users_file(home)
    if path.exists():
        known: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
        if set(PRINCIPALS) <= set(known):
            return known
    made = {name: secrets.token_urlsafe(24) for name in PRINCIPALS}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(made, out)
    return made


def principal_kafka(settings: Settings, principal: str) -> KafkaSettings:
    """``settings.kafka`` connecting as ``principal`` over SASL_SSL to the secure stack."""
    return settings.kafka.model_copy(
        update={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": MECHANISM,
            "sasl_username": principal,
            "sasl_password": SecretStr(passwords(settings.stack.home)[principal]),
            "ssl_cafile": str(Pki.of_home(settings.stack.home).ca_cert),
        }
    )


def admin_config(settings: Settings) -> dict[str, str]:
    """librdkafka properties of the stack's own admin client (its health check, the ACLs)."""
    if not settings.stack.secure:
        return {}
    return security_config(principal_kafka(settings, ADMIN))


def broker_properties(settings: Settings, broker_port: int, controller_port: int) -> str:
    """The lines secure mode adds to a node's server.properties."""
    pki = Pki.of_home(settings.stack.home)
    return SECURE_PROPERTIES.substitute(
        broker_port=broker_port,
        controller_port=controller_port,
        mechanism=MECHANISM,
        admin=ADMIN,
        admin_password=passwords(settings.stack.home)[ADMIN],
        keystore=pki.keystore(NODE_PRINCIPAL),
        ca_file=pki.ca_cert,
        node=NODE_PRINCIPAL,
    )


def scram_format_args(home: Path) -> list[str]:
    """``--add-scram`` arguments of ``kafka-storage format``: every principal's credential."""
    args: list[str] = []
    for name, password in sorted(passwords(home).items()):
        args += ["--add-scram", f"{MECHANISM}=[name={name},password={password}]"]
    return args


_TOPIC, _GROUP = ResourceType.TOPIC, ResourceType.GROUP
_LITERAL, _PREFIXED = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
_READ = (AclOperation.READ, AclOperation.DESCRIBE)
_WRITE = (AclOperation.WRITE, AclOperation.DESCRIBE)
_Grant = tuple[ResourceType, str, ResourcePatternType, AclOperation]
#: Our readers that are only assigned partitions still name a throwaway group
#: (``fleetstream-<purpose>-<uuid>``: registry caches, the live feed, tools), which librdkafka
#: looks up; DESCRIBE on that prefix lets it, and joins no group of the worker's.
_READER_GROUPS: Final[list[_Grant]] = [
    (ResourceType.GROUP, "fleetstream-", ResourcePatternType.PREFIXED, AclOperation.DESCRIBE),
    (ResourceType.GROUP, "fleetstream-", ResourcePatternType.PREFIXED, AclOperation.READ),
]


def acl_bindings(settings: Settings) -> list[AclBinding]:
    """What each principal but the super user may do (nothing else is allowed)."""
    t, app = settings.topics, settings.worker.app_id
    registries = (t.devices, t.flows)
    project = tuple(spec.name for spec in topic_specs(settings))
    worker_writes = (t.curated, t.readings, t.readings_1m, t.deadletter, t.alerts)
    grants: dict[str, list[_Grant]] = {
        # Ingest and media events; the admin API publishes registry changes and reads them
        # back; the live feed follows the curated readings and the status transitions.
        "api": [
            *_topics((t.raw, t.media, *registries), _WRITE),
            *_topics((*registries, t.curated, t.device_status), _READ),
            *_READER_GROUPS,
        ],
        # Only the worker writes its changelogs (the app id's prefix) and joins its groups.
        "worker": [
            # It reads every project topic (sinks, alerts, the operator views) ...
            *_topics(project, (*_READ, AclOperation.DESCRIBE_CONFIGS)),
            # ... and writes all but the edges' (raw, media) and the registries.
            *_topics((*worker_writes, t.device_status, t.crashes), _WRITE),
            (_TOPIC, f"{app}-", _PREFIXED, AclOperation.ALL),
            (_GROUP, app, _PREFIXED, AclOperation.ALL),
            (ResourceType.TRANSACTIONAL_ID, app, _PREFIXED, AclOperation.ALL),
            *_READER_GROUPS,
        ],
        "bridge": [*_topics((t.raw,), _WRITE), *_topics(registries, _READ), *_READER_GROUPS],
        "analytics": [
            *_topics((t.readings, t.readings_1m, t.alerts), _READ),
            (_GROUP, "analytics", _PREFIXED, AclOperation.READ),
        ],
    }
    return [
        AclBinding(
            kind, name, pattern, f"User:{principal}", "*", operation, AclPermissionType.ALLOW
        )
        for principal, entries in grants.items()
        for kind, name, pattern, operation in dict.fromkeys(entries)  # once each (DESCRIBE)
    ]


def _topics(names: tuple[str, ...], operations: tuple[AclOperation, ...]) -> list[_Grant]:
    return [(_TOPIC, name, _LITERAL, op) for name in names for op in operations]
