"""Flow registry and alert store of one API process, opened by the app's lifespan.

A Postgres pool of its own (``min_size=0``: the API starts, and ingests, while Postgres is down;
the flow and alert routes answer 503 meanwhile) and the ``fleet.flows.v1`` publisher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, cast

from fastapi import Depends, FastAPI, Request

from connectors.kafka.registry import RegistryPublisher
from connectors.postgres.alerts import AlertStore
from connectors.postgres.flows import FlowStore
from connectors.postgres.pool import create_pool
from connectors.registry import FlowRegistry
from schemas.settings import Settings
from streams.flow_engine.engine import check_definition


@asynccontextmanager
async def flow_resources(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    postgres, kafka = settings.postgres, settings.kafka
    pool = await create_pool(postgres, min_size=0, max_size=min(postgres.pool_max_size, 4))
    publisher = RegistryPublisher(
        kafka.bootstrap_servers,
        settings.topics.flows,
        delivery_timeout_ms=kafka.delivery_timeout_ms,
    )
    app.state.flow_registry = FlowRegistry(FlowStore(pool), publisher, check_definition)
    app.state.alert_store = AlertStore(pool)
    try:
        yield
    finally:
        await asyncio.to_thread(publisher.close)
        await pool.close()


async def get_flow_registry(request: Request) -> FlowRegistry:
    return cast(FlowRegistry, request.app.state.flow_registry)


async def get_alert_store(request: Request) -> AlertStore:
    return cast(AlertStore, request.app.state.alert_store)


FlowRegistryDep = Annotated[FlowRegistry, Depends(get_flow_registry)]
AlertStoreDep = Annotated[AlertStore, Depends(get_alert_store)]
