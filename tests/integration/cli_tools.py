"""``fleetstream`` run as an operator runs it: a child process with the test's settings."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from connectors.postgres import migrate
from connectors.postgres.pool import connect
from schemas.settings import Settings
from tests.integration.processes import PROJECT_ROOT
from tests.support import settings_env


def fleetstream(
    settings: Settings,
    *args: str,
    code: int = 0,
    input_text: str = "",
    timeout_s: float = 180.0,
) -> subprocess.CompletedProcess[str]:
    """``fleetstream ARGS``; it must exit with ``code``. Standard input is ``input_text`` (empty:
    a confirmation gets no answer, as in a script)."""
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "cli.main", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **settings_env(settings)},
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == code, (
        f"{args}: exit {result.returncode}, wanted {code}\n{result.stdout[-2000:]}\n"
        f"{result.stderr[-3000:]}"
    )
    return result


def json_out(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def json_lines(result: subprocess.CompletedProcess[str]) -> list[Any]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


async def _admin(settings: Settings, statement: str) -> None:
    conn = await connect(settings.postgres)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextmanager
def own_database_of(settings: Settings) -> Iterator[Settings]:
    """``settings`` on a database of its own, migrated, dropped afterwards: for commands that
    act on every row (``flows apply --prune``, ``db downgrade``), which must not reach rows
    other tests keep in the shared test database."""
    name = f"fleetstream_cli_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(settings, f'CREATE DATABASE "{name}"'))
    own = settings.model_copy(
        update={"postgres": settings.postgres.model_copy(update={"database": name})}
    )
    try:
        migrate.upgrade(own.postgres)
        yield own
    finally:
        asyncio.run(_admin(settings, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
