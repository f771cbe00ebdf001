"""Database migrations with Alembic, driven from code (``fleetstream db upgrade``).

The migration scripts live beside this module in ``migrations/``; there is no alembic.ini to
keep in sync: the URL comes from the caller, which takes it from the settings.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(dsn: str) -> Config:
    """An Alembic config for ``dsn`` (a ``postgresql://`` URL), driven through asyncpg."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    url = dsn.replace("postgresql://", "postgresql+asyncpg://", 1)
    # ConfigParser interpolation treats '%' specially; escape it so passwords survive.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(dsn: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(dsn), revision)


def downgrade(dsn: str, revision: str) -> None:
    command.downgrade(alembic_config(dsn), revision)


def current(dsn: str) -> None:
    """Print the current revision (Alembic writes it to stdout)."""
    command.current(alembic_config(dsn), verbose=True)
