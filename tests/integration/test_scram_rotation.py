"""``fleetstream stack credentials rotate`` on the secure tests' own broker (``make
test-secure``): after it, the broker refuses the principal's old password and takes the new one,
which is what clients read from the stack's users file."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError
from pydantic import SecretStr

from cli.stack import scram
from cli.stack.kafka_security import passwords, principal_kafka, users_file
from connectors.kafka.security import client_config
from schemas.settings import Settings
from tests.integration.secure_tools import kafka_errors

pytestmark = pytest.mark.secure

PRINCIPAL = "analytics"  # the one no other secure test needs while this one runs


def test_the_old_password_is_refused_and_the_new_one_taken(secure_stack: Settings) -> None:
    home = secure_stack.stack.home
    before = passwords(home)
    assert scram.rotate(secure_stack, [PRINCIPAL], print) == [PRINCIPAL]
    after = passwords(home)
    assert after[PRINCIPAL] != before[PRINCIPAL]
    assert {k: v for k, v in after.items() if k != PRINCIPAL} == {
        k: v for k, v in before.items() if k != PRINCIPAL
    }
    assert users_file(home).stat().st_mode & 0o777 == 0o600
    kafka = principal_kafka(secure_stack, PRINCIPAL)  # read from the file: the new password
    assert kafka.sasl_password.get_secret_value() == after[PRINCIPAL]
    _wait_accepted(client_config(kafka.bootstrap_servers, kafka))
    stale = kafka.model_copy(update={"sasl_password": SecretStr(before[PRINCIPAL])})
    refused = kafka_errors(client_config(kafka.bootstrap_servers, stale))
    assert KafkaError._AUTHENTICATION in [error.code() for error in refused], refused


def _wait_accepted(config: dict[str, object], timeout_s: float = 60.0) -> None:
    """The broker applies the new credential from its metadata log a moment after the
    controller took it: wait until a client with it is let in."""
    deadline = time.monotonic() + timeout_s
    while (errors := kafka_errors(config, timeout_s=10)) and time.monotonic() < deadline:
        pass
    assert errors == [], errors
