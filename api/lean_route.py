"""Routes whose endpoint takes the request and answers a response, with nothing in between.

FastAPI's handler of an ``APIRoute`` resolves the endpoint's dependencies and parameters on
every request, even when the only parameter is the ``Request`` (it still parses the query
string and builds its stacks): a tenth of a one-reading request's CPU, and a third with the
dependencies and header parameter the ingest routes had (bench/RESULTS.md, the one-reading
edge). A :class:`LeanRoute` calls its endpoint directly; it stays
an ``APIRoute`` in every other way (matched, named, and documented in OpenAPI from its
``openapi_extra`` and ``response_model``), and the app's middleware and exception handlers
apply as on any route. Its endpoint reads headers and checks credentials itself
(``api.edge.ingest_request``).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, cast

from fastapi import Request, Response
from fastapi.routing import APIRoute

Endpoint = Callable[[Request], Awaitable[Response]]


class LeanRoute(APIRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if list(inspect.signature(endpoint).parameters) != ["request"]:
            raise TypeError(f"{endpoint.__qualname__}: a LeanRoute endpoint takes (request) only")
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = cast(Endpoint, self.endpoint)

        async def handler(request: Request) -> Response:
            return await endpoint(request)

        return handler
