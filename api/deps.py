"""Dependencies shared by the routes, as ``Annotated`` aliases.

Every dependency is ``async def``, even one that only reads ``app.state``: FastAPI runs a plain
``def`` dependency in a worker thread, a thread hop on every request (a unit test checks every
route).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Request

from connectors.kafka.producer import EventProducer
from schemas.settings import Settings


async def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


async def get_producer(request: Request) -> EventProducer:
    return cast(EventProducer, request.app.state.producer)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ProducerDep = Annotated[EventProducer, Depends(get_producer)]
