"""Every agent module is registered, and the worker app is built from the settings given."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
from pathlib import Path
from typing import Any

import pytest

import agents
from agents.registry import AGENTS, build_worker_app
from schemas.settings import Settings
from streams import context
from tests.support import isolated


def test_every_module_with_a_register_function_is_in_the_list() -> None:
    defined = set()
    for module_info in pkgutil.iter_modules(agents.__path__):
        module = importlib.import_module(f"agents.{module_info.name}")
        register = getattr(module, "register", None)
        if callable(register):
            defined.add(register)
    assert defined == set(AGENTS)


def test_the_app_is_built_from_the_settings_passed_in(tmp_path: Path) -> None:
    settings = isolated(Settings(), "unit", tmp_path)
    app, ctx = build_worker_app(settings)
    assert app.conf.id == settings.worker.app_id
    assert ctx.settings is settings
    assert {agent.name for agent in app.agents.values()} >= {
        "validate",
        "device-state",
        "flows",
        "sink-alerts",
    }
    consumed = {topic for agent in app.agents.values() for topic in agent.channel.topics}
    topics = settings.topics
    # The status table and the rollups share one read of each curated record (decision 33).
    on_curated = {a.name for a in app.agents.values() if topics.curated in a.channel.topics}
    assert on_curated == {"device-state", "flows"}
    assert consumed == {topics.raw, topics.curated, topics.alerts}
    assert {table for table in app.tables} == {"device-status", "rollups", "flow-state"}


async def test_an_escaped_exception_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    stopped: list[tuple[str, BaseException]] = []
    monkeypatch.setattr(context, "stop_worker", lambda name, exc: stopped.append((name, exc)))

    async def body(stream: Any) -> None:
        raise TypeError("a bug")

    await context.guarded("validate", body)(object())
    assert [(name, type(exc)) for name, exc in stopped] == [("validate", TypeError)]


async def test_cancellation_is_a_normal_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(context, "stop_worker", lambda name, exc: pytest.fail("stopped"))

    async def body(stream: Any) -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await context.guarded("validate", body)(object())


def test_state_tables_read_their_changelogs_as_raw_bytes(tmp_path: Path) -> None:
    """Recovery decodes changelogs with the table's serializers: json would fail on our bytes."""
    app, _ = build_worker_app(isolated(Settings(), "unit", tmp_path))
    for name in ("device-status", "rollups", "flow-state"):
        table: Any = app.tables[name]
        assert (table.key_serializer, table.value_serializer) == ("raw", "raw")
        assert table.changelog_topic.value_serializer == "raw"
