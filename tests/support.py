"""Helpers shared by the test suites: waiting on conditions, settings as environment."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, SecretStr
from pydantic_core import to_jsonable_python

from schemas.settings import Settings, TopicSettings

TOPIC_FIELDS = tuple(
    name for name, field in TopicSettings.model_fields.items() if field.annotation is str
)


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    *,
    timeout_s: float,
    what: str | Callable[[], str],
    poll_s: float = 0.2,
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` when ``timeout_s`` runs out.

    ``what`` may be a callable, evaluated only on failure (e.g. to attach a log tail).
    """
    deadline = time.monotonic() + timeout_s
    while not await condition():
        if time.monotonic() > deadline:
            described = what() if callable(what) else what
            raise AssertionError(f"timed out after {timeout_s}s waiting for {described}")
        await asyncio.sleep(poll_s)


def settings_env(settings: Settings) -> dict[str, str]:
    """``settings`` as FLEET_* variables, so a child process reads the same settings."""
    env = {
        "FLEET_ENVIRONMENT": settings.environment,
        "FLEET_LOG_LEVEL": settings.log_level,
    }
    for section_name in Settings.model_fields:
        section = getattr(settings, section_name)
        if not isinstance(section, BaseModel):
            continue
        for field in type(section).model_fields:
            env[f"FLEET_{section_name}__{field}".upper()] = _env_value(getattr(section, field))
    return env


def _env_value(value: object) -> str:
    if isinstance(value, BaseModel | dict | list):  # nested settings and lists travel as JSON
        return json.dumps(to_jsonable_python(value))
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    return str(value)


def isolated(base: Settings, prefix: str, datadir: Path, **worker: object) -> Settings:
    """``base`` with fresh uuid topic names, its own consumer group and Faust data dir, and the
    worker's web view off, so tests and benchmarks never share state with anything else."""
    suffix = uuid.uuid4().hex[:10]
    topics = TopicSettings(**{name: f"{prefix}.{name}.{suffix}" for name in TOPIC_FIELDS})
    worker_updates = {
        "app_id": f"{prefix}-{suffix}",
        "web_enabled": False,
        "datadir": datadir,
        **worker,
    }
    return base.model_copy(
        update={"topics": topics, "worker": base.worker.model_copy(update=worker_updates)}
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class StandInMessage:
    """What table code reads of a Faust message: its topic and partition."""

    topic: str
    partition: int


@dataclass
class StandInEvent:
    """A Faust event as table writes see it (``writing_as``, ``agents.changelog``)."""

    message: StandInMessage
    value: bytes = b""
    headers: dict[str, bytes] = dataclasses.field(default_factory=dict)


def event_in(topic: str, partition: int) -> StandInEvent:
    return StandInEvent(StandInMessage(topic, partition))
