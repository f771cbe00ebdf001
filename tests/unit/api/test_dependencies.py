"""Every dependency of every route is a coroutine function.

FastAPI runs a plain ``def`` dependency in a worker thread: a thread hop per request, which
was a fifth of the API's CPU on one-reading requests (bench/RESULTS.md, the one-reading edge).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, APIWebSocketRoute

from api.app import create_app
from api.lean_route import LeanRoute
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


def test_a_lean_route_refuses_an_endpoint_that_expects_fastapi_to_fill_parameters() -> None:
    async def wants_a_header(request: Request, x_key: str | None = None) -> Response:
        return Response()

    async def takes_the_request(request: Request) -> Response:
        return Response(status_code=204)

    with pytest.raises(TypeError, match="takes \\(request\\) only"):
        LeanRoute("/x", wants_a_header, methods=["POST"])
    assert LeanRoute("/x", takes_the_request, methods=["POST"]).path == "/x"


async def test_the_ingest_routes_are_lean_and_still_documented() -> None:
    app = create_app(Settings())
    lean = {route.path for route in _api_routes(app.routes) if isinstance(route, LeanRoute)}
    assert lean == {
        "/v1/readings",
        "/api/v1/sensors/ingest",
        "/api/v1/sensors/ingest/batch",
        "/api/v1/sensor-data",
        "/api/v1/sensor-data/batch",
    }
    documented = app.openapi()["paths"]
    for path in lean:
        parameters = documented[path]["post"]["parameters"]
        assert [p["name"] for p in parameters] == ["idempotency-key"]
