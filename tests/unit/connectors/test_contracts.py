"""Small contracts of the connectors that need no service."""

from __future__ import annotations

import asyncpg
from pydantic import SecretStr

from connectors.kafka.producer import ProducerConfig
from connectors.postgres.errors import is_retriable
from connectors.postgres.migrate import alembic_config
from connectors.postgres.readings import _inserted_count
from schemas.settings import PostgresSettings


def test_producer_waits_for_all_replicas_and_is_idempotent() -> None:
    config = ProducerConfig("127.0.0.1:9092", delivery_timeout_ms=1234).librdkafka()
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["message.timeout.ms"] == 1234


def test_outages_are_retriable_and_data_errors_are_not() -> None:
    assert is_retriable(ConnectionRefusedError())
    assert is_retriable(asyncpg.CannotConnectNowError("starting up"))
    # A missing table is the deployment's fault, not the rows': wait, do not dead-letter.
    assert is_retriable(asyncpg.UndefinedTableError("relation readings does not exist"))
    assert not is_retriable(asyncpg.UniqueViolationError("duplicate"))
    assert not is_retriable(asyncpg.DataError("bad value"))
    assert not is_retriable(asyncpg.exceptions._base.DataError("bad query input"))
    assert not is_retriable(ValueError("nope"))


def test_migrations_use_asyncpg_and_keep_percent_signs() -> None:
    postgres = PostgresSettings(
        host="h", port=5432, user="u", password=SecretStr("p%40ss"), database="db"
    )
    config = alembic_config(postgres)
    assert config.get_main_option("sqlalchemy.url") == "postgresql+asyncpg://u:p%40ss@h:5432/db"
    assert config.attributes["connect_args"] == {"ssl": False}


def test_insert_count_is_read_from_the_command_tag() -> None:
    assert _inserted_count("INSERT 0 42") == 42
