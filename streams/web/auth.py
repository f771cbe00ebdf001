"""Who may use the worker's web server: the holder of the admin token.

A request is let in when it carries ``Authorization: Bearer <FLEET_AUTH__ADMIN_TOKEN>`` (scripts,
Prometheus, other workers routing a request) or the session cookie the login form sets
(browsers). The cookie holds an expiry and an HMAC of it keyed with the admin token, so it
needs no server-side session store, works on every worker of the app, and stops working when
the token changes. It is ``HttpOnly`` (scripts cannot read it) and ``SameSite=Strict``; on top,
a state-changing request authenticated by the cookie must be JSON (a cross-site form cannot
send that without CORS, which we never allow).

Everything on the server needs this, Faust's own pages and the flows views included, except the
login page and the static files (and ``/metrics`` when ``FLEET_METRICS__ACCESS`` is ``open``:
one rule for every process's metrics, :mod:`connectors.prometheus`). A browser asking for a
page is redirected to the login form; any other request gets 401 problem+json with
``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from urllib.parse import quote

import msgspec
from aiohttp import web

COOKIE = "fleet_ops"
SESSION_TTL_S = 12 * 3600
PREFIX = "/ops"
LOGIN = f"{PREFIX}/login"
PUBLIC_PREFIXES = (LOGIN, f"{PREFIX}/static/")
REALM = "fleetstream-ops"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def token_matches(candidate: str, admin_token: str) -> bool:
    """Constant-time (digests compared, so the length leaks nothing); never for an empty one."""
    return bool(admin_token) and hmac.compare_digest(_digest(candidate), _digest(admin_token))


def _mac(admin_token: str, expires: int) -> str:
    message = f"fleet-ops-session|{expires}".encode()
    return hmac.new(admin_token.encode(), message, hashlib.sha256).hexdigest()


def session_value(admin_token: str, now: float) -> str:
    """The cookie value of a session that ends :data:`SESSION_TTL_S` after ``now``."""
    expires = int(now) + SESSION_TTL_S
    return f"{expires}.{_mac(admin_token, expires)}"


def session_valid(value: str, admin_token: str, now: float) -> bool:
    expires_text, _, mac = value.partition(".")
    if not admin_token or not expires_text.isdigit():
        return False
    expires = int(expires_text)
    return expires > now and hmac.compare_digest(mac, _mac(admin_token, expires))


def bearer_token(headers: Mapping[str, str]) -> str | None:
    scheme, _, credentials = headers.get("Authorization", "").partition(" ")
    return credentials.strip() if scheme.lower() == "bearer" and credentials.strip() else None


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server, never another site."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return f"{PREFIX}/"
    return target


def problem(status: int, title: str, detail: str, **extra: object) -> web.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return web.Response(
        status=status, body=msgspec.json.encode(body), content_type="application/problem+json"
    )


def auth_middleware(
    admin_token: Callable[[], str], open_paths: frozenset[str] = frozenset()
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """The aiohttp middleware guarding every route (see the module docstring) but
    ``open_paths`` (``/metrics`` with ``FLEET_METRICS__ACCESS=open``)."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PUBLIC_PREFIXES) or request.path in open_paths:
            return await handler(request)
        token = admin_token()
        presented = bearer_token(request.headers)
        if presented is not None and token_matches(presented, token):
            return await handler(request)
        cookie = request.cookies.get(COOKIE)
        if presented is None and cookie and session_valid(cookie, token, time.time()):
            if request.method not in ("GET", "HEAD") and request.content_type != (
                "application/json"
            ):
                return problem(
                    415,
                    "JSON required",
                    "requests that change something must send application/json",
                )
            return await handler(request)
        if request.method == "GET" and _wants_page(request):
            location = f"{LOGIN}?next={quote(request.path_qs, safe='/')}"
            raise web.HTTPSeeOther(location)
        response = problem(
            401, "Unauthorized", "send the admin token as Authorization: Bearer <token>, or log in"
        )
        response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"'
        return response

    return guard


def _wants_page(request: web.Request) -> bool:
    return (
        request.path.startswith(PREFIX)
        and not request.path.startswith(f"{PREFIX}/api/")
        and "text/html" in request.headers.get("Accept", "")
    )


def login_cookie(response: web.StreamResponse, admin_token: str, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        session_value(admin_token, time.time()),
        max_age=SESSION_TTL_S,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=secure,
    )


def logout_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")
