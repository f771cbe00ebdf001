"""New SCRAM passwords for the secure stack's Kafka principals, against the running broker.

``fleetstream stack credentials rotate`` makes a new password for each principal named (all but
``admin`` by default), sets it on the broker with the Admin API's AlterUserScramCredentials (what
``kafka-configs --alter --add-config 'SCRAM-SHA-512=[...]' --entity-type users`` sends), and
then writes it to ``<home>/pki/kafka-users.json``, where every client of the stack reads it
(``cli/stack/kafka_security.passwords``). A password the broker refused is not written, so the
file never holds a password the broker does not know.

The broker checks a password when a connection authenticates: connections already open stay
up; a new connection with the old password is refused. So a running process keeps working
until it reconnects and must be restarted to read the new password (docs/security.md).
``admin`` is rotated only when named: the nodes' own logins use it too (``server.properties``,
rewritten from the file at each start), so the brokers are restarted right after.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from typing import Final

from confluent_kafka.admin import AdminClient

# confluent_kafka.admin re-exports these without __all__; mypy wants the defining module.
from confluent_kafka.admin._scram import (
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from cli.stack.errors import StackError
from cli.stack.kafka_security import ADMIN, PRINCIPALS, passwords, principal_kafka, users_file
from cli.stack.service import Progress
from connectors.kafka.security import client_config
from schemas.settings import Settings

ITERATIONS: Final = 8192
"""SCRAM-SHA-512 iterations (Kafka's minimum is 4096)."""
DEFAULT: Final[tuple[str, ...]] = tuple(name for name in PRINCIPALS if name != ADMIN)
TIMEOUT_S: Final = 30.0


def rotate(settings: Settings, principals: Sequence[str], progress: Progress) -> list[str]:
    """New passwords for ``principals`` on the broker and in the users file; the names rotated.
    Raises StackError (after writing those the broker took) when the broker refused one."""
    if not settings.stack.secure:
        raise StackError("SCRAM passwords exist in secure mode only (FLEET_STACK__SECURE=true)")
    unknown = sorted(set(principals) - set(PRINCIPALS))
    if unknown:
        raise StackError(f"unknown principals {unknown}; the stack's are {list(PRINCIPALS)}")
    new = {name: secrets.token_urlsafe(24) for name in dict.fromkeys(principals)}
    kafka = principal_kafka(settings, ADMIN)
    admin = AdminClient(client_config(kafka.bootstrap_servers, kafka, log_level=0))
    upserts: list[UserScramCredentialAlteration] = [
        UserScramCredentialUpsertion(
            name, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, ITERATIONS), password.encode()
        )
        for name, password in new.items()
    ]
    taken: dict[str, str] = {}
    failed: list[str] = []
    for name, future in admin.alter_user_scram_credentials(upserts).items():
        try:
            future.result(timeout=TIMEOUT_S)
            taken[name] = new[name]
        except Exception as exc:  # noqa: BLE001 - reported with the others after the file is written
            failed.append(f"{name}: {exc}")
    write_passwords(settings, {**passwords(settings.stack.home), **taken})
    for name in taken:
        progress(f"kafka: new SCRAM password for {name}; restart the processes that use it")
    if ADMIN in taken:
        progress("kafka: admin rotated: restart the brokers (their logins use it)")
    if failed:
        raise StackError("the broker refused: " + "; ".join(failed))
    return list(taken)


def write_passwords(settings: Settings, known: dict[str, str]) -> None:
    """Replace the users file in one step (0600 from its creation)."""
    path = users_file(settings.stack.home)
    scratch = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(known, out)
    scratch.replace(path)
