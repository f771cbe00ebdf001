"""Operator views and Prometheus metrics on the worker's web server (``streams.web``).

Registered like an agent (``agents.registry.AGENTS``) so every worker serves them; nothing is
added when ``FLEET_WORKER__WEB_ENABLED`` is off. The agents' own metrics are counted either way
(``streams.metrics``). On start each worker follows the dead-letter topic and samples its
agents' counters every couple of seconds (the rates on the overview) and every ten seconds
for the trends page (an hour in memory, ``streams.web.trends``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from streams.context import WorkerContext
from streams.web import trends
from streams.web.cluster import RATE_SAMPLE_S, Operator
from streams.web.views import register_views


def register(ctx: WorkerContext) -> None:
    if not ctx.settings.worker.web_enabled:
        return
    app = ctx.app
    operator = Operator(ctx)
    register_views(app, operator)

    async def start_operator_views() -> None:
        operator.start()

    async def sample_rates() -> None:
        operator.sample()

    async def sample_trend() -> None:
        await operator.sample_trend()

    app.task(start_operator_views)
    app.timer(RATE_SAMPLE_S, name="operator-rates")(sample_rates)
    app.timer(trends.SAMPLE_S, name="operator-trends")(sample_trend)

    @app.on_before_shutdown.connect
    async def close_operator_views(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        await asyncio.shield(operator.close())
