"""The worker's Faust app with every agent registered: the one list of agent modules.

A module of this package that defines ``register(ctx)`` must be listed in :data:`AGENTS`
(``tests/unit/agents/test_registry.py`` fails otherwise), so a new agent cannot silently not
run because someone forgot a list elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import faust

from agents import (
    alerts_sink,
    device_state,
    flows,
    maintenance,
    operator,
    postgres_sink,
    redis_sink,
    validate,
)
from schemas.settings import Settings
from streams.app import create_app
from streams.context import WorkerContext
from streams.crashes import CrashLedger
from streams.topics import SourceTopics

AGENTS: tuple[Callable[[WorkerContext], None], ...] = (
    validate.register,
    device_state.register,
    postgres_sink.register,
    redis_sink.register,
    maintenance.register,
    flows.register,
    alerts_sink.register,
    operator.register,
)


def build_worker_app(
    settings: Settings, crashes: CrashLedger | None = None
) -> tuple[faust.App, WorkerContext]:
    """A Faust app for ``settings`` with every agent of :data:`AGENTS` on it; ``crashes`` is
    the loaded crash ledger (``streams.crashes``)."""
    app = create_app(settings)
    topics = SourceTopics.of(app, settings)
    ctx = WorkerContext(settings=settings, app=app, topics=topics, crashes=crashes)
    for register in AGENTS:
        register(ctx)

    @app.on_before_shutdown.connect
    async def _close_outputs(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await ctx.close()

    return app, ctx
