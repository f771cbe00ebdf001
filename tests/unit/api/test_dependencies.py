"""Every dependency of every route is a coroutine function.

FastAPI runs a plain ``def`` dependency in a worker thread: a thread hop per request, which
was a fifth of the API's CPU on one-reading requests (bench/RESULTS.md, the one-reading edge).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from api.app import create_app
from schemas.settings import Settings


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _api_routes(routes: Iterable[Any]) -> Iterator[APIRoute | APIWebSocketRoute]:
    """The app's routes, through the routers it includes (``original_router``)."""
    for route in routes:
        if isinstance(route, APIRoute | APIWebSocketRoute):
            yield route
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _api_routes(included.routes)


def test_no_route_depends_on_a_plain_function() -> None:
    app = create_app(Settings())
    routes = list(_api_routes(app.routes))
    operations = sum(len(methods) for methods in app.openapi()["paths"].values())
    sync = sorted(
        {
            f"{route.path}: {call.__module__}.{call.__qualname__}"
            for route in routes
            for call in _calls(route.dependant)
            if call is not None and not inspect.iscoroutinefunction(call)
        }
    )
    assert len(routes) == operations + 1  # the websocket route is not in OpenAPI
    assert sync == []
