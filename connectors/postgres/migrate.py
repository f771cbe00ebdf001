"""Database migrations with Alembic, driven from code (``fleetstream db upgrade``).

The migration scripts live beside this module in ``migrations/``; there is no alembic.ini to
keep in sync: the URL and the TLS options come from the caller's settings.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from connectors.tls import postgres_ssl
from schemas.settings import PostgresSettings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(postgres: PostgresSettings) -> Config:
    """An Alembic config for ``postgres``'s database, driven through asyncpg with its TLS."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connect_args"] = {"ssl": postgres_ssl(postgres)}
    url = postgres.dsn().replace("postgresql://", "postgresql+asyncpg://", 1)
    # ConfigParser interpolation treats '%' specially; escape it so passwords survive.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(postgres: PostgresSettings, revision: str = "head") -> None:
    command.upgrade(alembic_config(postgres), revision)


def downgrade(postgres: PostgresSettings, revision: str) -> None:
    command.downgrade(alembic_config(postgres), revision)


def current(postgres: PostgresSettings) -> None:
    """Print the current revision (Alembic writes it to stdout)."""
    command.current(alembic_config(postgres), verbose=True)
