"""The operator views: Faust ``app.page`` views on the worker's web server (aiohttp).

Pages are server-rendered shells (``templates/``) that ``static/ops.js`` fills from the JSON
endpoints below and refreshes every few seconds; every page's data has its endpoint, so scripts
read the same. All of it sits behind ``streams.web.auth`` (admin token or login cookie).

| path | what |
| --- | --- |
| ``/ops/``, ``/ops/trends``, ``/ops/devices``, ``/ops/devices/{id}`` | pages |
| ``/ops/deadletters``, ``/ops/flows``, ``/ops/alerts`` (history) | pages |
| ``/ops/login`` (GET, POST), ``/ops/logout`` (POST) | the login form, the session cookie |
| ``/ops/api/overview`` | rates, lag, dead letters, devices, alerts, workers (of all workers) |
| ``/ops/api/worker`` | this worker alone (what the others ask it) |
| ``/ops/api/devices?q=&status=&tag=&profile=&after=&limit=`` | one page of the device list |
| ``/ops/api/devices/{id}`` | one device |
| ``/ops/api/devices/{id}/state`` | the status-table entry, routed to the owning worker |
| ``/ops/api/trends`` (``?local=1``: this worker's) | the last hour (``streams.web.trends``) |
| ``/ops/api/deadletters?stage=&device_id=&reason=&since=&until=`` | letters, filtered |
| ``/ops/api/deadletters/replay`` (POST) | replay one |
| ``/ops/api/deadletters/replay/preview``, ``.../replay/bulk`` (POST) | bulk replay, previewed |
| ``/ops/api/devices/{id}/enabled``, ``.../rotate-token`` (POST) | device actions (admin API) |
| ``/ops/api/flows``, ``/ops/api/flows/registry`` | flows in force, every flow |
| ``/ops/api/flows/{id}/enabled``, ``.../dry-run`` (POST) | flow actions (admin API) |
| ``/ops/api/alerts``, ``/ops/api/alerts/history``, ``/ops/api/alerts/{id}/ack`` (POST) | alerts |
| ``/metrics`` | Prometheus (``streams.web.exposition``) |

Device and flow actions are the admin API's (:mod:`streams.web.admin_api`), called with the
admin token; nothing here changes a device or a flow itself.

Acknowledging an alert here is the API's acknowledgement (``POST /api/v1/alerts/{id}/ack``,
the canonical route, :mod:`api.routes.alerts`) for the page: the same
:meth:`~connectors.postgres.alerts.AlertStore.acknowledge` with the same rule for ``by``, behind
the page's login.
"""

from __future__ import annotations

import html
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from string import Template
from typing import Any, cast

import faust
import msgspec
from aiohttp import web
from faust.web import View

from connectors.kafka.errors import KafkaUnavailable
from connectors.postgres.alerts import AlertNotFound, AlertQuery, InvalidAcknowledger
from connectors.postgres.errors import DatabaseUnavailable
from schemas.readings import DEVICE_ID_PATTERN
from streams.web import auth
from streams.web.admin_api import AdminApiUnreachable
from streams.web.cluster import ROUTED_HEADER, Operator
from streams.web.device_pages import DeviceFilter, FilterError
from streams.web.exposition import exposition
from streams.web.letters import LetterFilter

HERE = Path(__file__).parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
PAGES = {
    "overview": "Overview",
    "trends": "Trends",
    "alerts": "Alert history",
    "devices": "Devices",
    "device": "Device",
    "deadletters": "Dead letters",
    "flows": "Flows and alerts",
}
_DEVICE_ID = re.compile(DEVICE_ID_PATTERN)
_json = msgspec.json.Encoder()


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=_json.encode(data), content_type="application/json")


def html_response(text: str, status: int = 200) -> web.Response:
    response = web.Response(status=status, text=text, content_type="text/html")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'"
    )
    return response


class Pages:
    """HTML shells from ``templates/``: ``layout.html`` around one template per page."""

    def __init__(self, folder: Path = TEMPLATES) -> None:
        self._templates = {path.stem: Template(path.read_text()) for path in folder.glob("*.html")}

    def page(self, name: str, worker: str, **data: str) -> str:
        attributes = " ".join(
            f'data-{key.replace("_", "-")}="{html.escape(value)}"' for key, value in data.items()
        )
        escaped = {key: html.escape(value) for key, value in data.items()}
        return self._templates["layout"].substitute(
            title=html.escape(PAGES[name]),
            page=name,
            attributes=attributes,
            worker=html.escape(worker),
            content=self._templates[name].substitute(escaped),
        )

    def login(self, next_path: str, message: str = "") -> str:
        return self._templates["login"].substitute(
            next=html.escape(next_path), message=html.escape(message)
        )


async def _read_json(request: web.Request) -> dict[str, Any]:
    try:
        body = msgspec.json.decode(await request.read())
    except msgspec.DecodeError as exc:
        raise _Invalid("body", f"not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise _Invalid("body", "expected a JSON object")
    return body


class _Invalid(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _invalid(field: str, message: str) -> web.Response:
    return auth.problem(
        422,
        "Invalid request",
        f"{field}: {message}",
        errors=[{"field": field, "message": message}],
    )


def _device_id(value: str) -> str:
    if not _DEVICE_ID.match(value):
        raise _Invalid("device_id", "not a device id")
    return value


def _device_filter(request: web.Request) -> DeviceFilter:
    try:
        return DeviceFilter.from_query(request.query)
    except FilterError as exc:
        raise _Invalid(exc.field, str(exc)) from exc


def _int_field(body: dict[str, Any], name: str) -> int:
    value = body.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _Invalid(name, "expected an integer >= 0")
    return value


def _time_field(source: Mapping[str, Any], name: str) -> datetime | None:
    value = source.get(name)
    if value in (None, ""):
        return None
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _Invalid(name, "expected an ISO 8601 date-time with a zone")
    return moment


def _text_field(source: Mapping[str, Any], name: str, longest: int = 200) -> str | None:
    value = source.get(name)
    if value in (None, ""):
        return None
    if not isinstance(value, str) or len(value) > longest:
        raise _Invalid(name, f"expected text of at most {longest} characters")
    return value


def _letter_filter(source: Mapping[str, Any]) -> LetterFilter:
    """The dead-letter filter of a query string or a JSON body (the same fields)."""
    device = _text_field(source, "device_id")
    return LetterFilter(
        stage=_text_field(source, "stage"),
        device_id=_device_id(device) if device else None,
        reason=_text_field(source, "reason"),
        since=_time_field(source, "since"),
        until=_time_field(source, "until"),
    )


_ALERT_STATES = ("active", "cleared")


def _alert_query(query: Mapping[str, str]) -> AlertQuery:
    state = query.get("state") or None
    if state is not None and state not in _ALERT_STATES:
        raise _Invalid("state", "expected active or cleared")
    acknowledged = query.get("acknowledged") or None
    if acknowledged is not None and acknowledged not in ("yes", "no"):
        raise _Invalid("acknowledged", "expected yes or no")
    limit, offset = query.get("limit", "100"), query.get("offset", "0")
    if not limit.isdigit() or not 1 <= int(limit) <= 500:
        raise _Invalid("limit", "expected 1 to 500")
    if not offset.isdigit():
        raise _Invalid("offset", "expected an integer >= 0")
    device = query.get("device_id") or None
    return AlertQuery(
        device_id=_device_id(device) if device else None,
        rule_id=_text_field(query, "rule_id"),
        state=state,  # type: ignore[arg-type]  # checked above
        severity=_text_field(query, "severity"),
        acknowledged=None if acknowledged is None else acknowledged == "yes",
        since=_time_field(query, "since"),
        until=_time_field(query, "until"),
        limit=int(limit),
        offset=int(offset),
    )


def _enabled_field(body: Mapping[str, Any]) -> bool:
    value = body.get("enabled")
    if not isinstance(value, bool):
        raise _Invalid("enabled", "expected true or false")
    return value


def passed_on(status: int, body: Any) -> web.Response:
    """The admin API's answer as it came (problem+json for an error)."""
    response = json_response(body, status)
    if status >= 400:
        response.content_type = "application/problem+json"
    response.headers["Cache-Control"] = "no-store"  # a rotated token is shown once
    return response


Handler = Callable[..., Awaitable[web.StreamResponse]]


def answers(handler: Handler) -> Handler:
    """Service outages and bad input as problem+json, never a 500 page."""

    async def wrapped(view: Any, request: web.Request, **kwargs: Any) -> web.StreamResponse:
        try:
            return await handler(view, request, **kwargs)
        except _Invalid as exc:
            return _invalid(exc.field, str(exc))
        except AlertNotFound as exc:
            return auth.problem(404, "No such alert", str(exc))
        except InvalidAcknowledger as exc:
            return _invalid("by", str(exc))
        except DatabaseUnavailable as exc:  # as the API answers it
            return auth.problem(503, "Service unavailable", str(exc))
        except KafkaUnavailable as exc:
            return auth.problem(503, "Kafka unavailable", str(exc))
        except AdminApiUnreachable as exc:
            return auth.problem(503, "Admin API unreachable", str(exc))
        except OSError as exc:  # Postgres or another worker cannot be reached
            return auth.problem(503, "Service unavailable", f"{type(exc).__name__}: {exc}")

    wrapped.__name__ = handler.__name__
    return wrapped


def register_views(app: faust.App, op: Operator) -> None:  # noqa: C901 - one view per route
    pages = Pages()
    server = cast(Any, app.web)  # the aiohttp driver (faust.web.drivers.aiohttp.Web)
    open_paths = frozenset({"/metrics"} if op.settings.metrics.access == "open" else ())
    server.web_app.middlewares.append(auth.auth_middleware(lambda: op.admin_token, open_paths))
    server.add_static("/ops/static/", STATIC)

    def shell(name: str, **data: str) -> web.Response:
        return html_response(pages.page(name, op.url, **data))

    @app.page("/ops", name="ops-root")
    class OpsRoot(View):
        async def get(self, request: web.Request) -> web.StreamResponse:
            raise web.HTTPSeeOther("/ops/")

    @app.page("/ops/", name="ops-overview")
    class OpsOverview(View):
        async def get(self, request: web.Request) -> web.StreamResponse:
            return shell("overview")

    @app.page("/ops/devices", name="ops-devices")
    class OpsDevices(View):
        async def get(self, request: web.Request) -> web.StreamResponse:
            return shell("devices", query=request.query.get("q", ""))

    @app.page("/ops/devices/{device_id}", name="ops-device")
    class OpsDevice(View):
        @answers
        async def get(self, request: web.Request, device_id: str) -> web.StreamResponse:
            return shell("device", device_id=_device_id(device_id))

    @app.page("/ops/deadletters", name="ops-deadletters")
    class OpsDeadLetters(View):
        async def get(self, request: web.Request) -> web.StreamResponse:
            return shell("deadletters")

    @app.page("/ops/trends", name="ops-trends")
    class OpsTrends(View):
        async def get(self, request: web.Request) -> web.StreamResponse:
            return shell("trends")

    @app.page("/ops/alerts", name="ops-alerts")
    class OpsAlerts(View):
        async def get(self, request: web.Request) -> web.StreamResponse:
            return shell("alerts")

    @app.page("/ops/flows", name="ops-flows")
    class OpsFlows(View):
        async def get(self, request: web.Request) -> web.StreamResponse:
            return shell("flows")

    @app.page(auth.LOGIN, name="ops-login")
    class OpsLogin(View):
        async def get(self, request: web.Request) -> web.StreamResponse:
            return html_response(pages.login(auth.safe_next(request.query.get("next"))))

        async def post(self, request: web.Request) -> web.StreamResponse:
            form = await request.post()
            token, target = form.get("token"), auth.safe_next(str(form.get("next") or ""))
            if not isinstance(token, str) or not auth.token_matches(token, op.admin_token):
                return html_response(pages.login(target, "That is not the admin token."), 401)
            response = web.HTTPSeeOther(target)
            auth.login_cookie(response, op.admin_token, secure=request.secure)
            raise response

    @app.page("/ops/logout", name="ops-logout")
    class OpsLogout(View):
        async def post(self, request: web.Request) -> web.StreamResponse:
            response = json_response({"status": "logged out"})
            auth.logout_cookie(response)
            return response

    @app.page("/ops/api/overview", name="ops-api-overview")
    class OpsApiOverview(View):
        @answers
        async def get(self, request: web.Request) -> web.StreamResponse:
            return json_response(await op.overview())

    @app.page("/ops/api/worker", name="ops-api-worker")
    class OpsApiWorker(View):
        @answers
        async def get(self, request: web.Request) -> web.StreamResponse:
            paged = "page" in request.query
            return json_response(op.worker(_device_filter(request) if paged else None))

    @app.page("/ops/api/devices", name="ops-api-devices")
    class OpsApiDevices(View):
        @answers
        async def get(self, request: web.Request) -> web.StreamResponse:
            return json_response(await op.devices(_device_filter(request)))

    @app.page("/ops/api/devices/{device_id}", name="ops-api-device")
    class OpsApiDevice(View):
        @answers
        async def get(self, request: web.Request, device_id: str) -> web.StreamResponse:
            return json_response(await op.device(_device_id(device_id)))

    @app.page("/ops/api/devices/{device_id}/state", name="ops-api-device-state")
    class OpsApiDeviceState(View):
        @answers
        async def get(self, request: web.Request, device_id: str) -> web.StreamResponse:
            routed = request.headers.get(ROUTED_HEADER) == "1"
            status, body = await op.device_state(_device_id(device_id), routed)
            response = json_response(body, status)
            if status == 503:
                response.headers["Retry-After"] = "2"
            return response

    @app.page("/ops/api/deadletters", name="ops-api-deadletters")
    class OpsApiDeadLetters(View):
        @answers
        async def get(self, request: web.Request) -> web.StreamResponse:
            query = request.query
            limit = query.get("limit", "100")
            if not limit.isdigit() or not 1 <= int(limit) <= 200:
                raise _Invalid("limit", "expected 1 to 200")
            return json_response(op.dead_letters(int(limit), _letter_filter(query)))

    @app.page("/ops/api/deadletters/replay/preview", name="ops-api-deadletters-preview")
    class OpsApiReplayPreview(View):
        @answers
        async def post(self, request: web.Request) -> web.StreamResponse:
            return json_response(op.replay_preview(_letter_filter(await _read_json(request))))

    @app.page("/ops/api/deadletters/replay/bulk", name="ops-api-deadletters-bulk")
    class OpsApiReplayBulk(View):
        @answers
        async def post(self, request: web.Request) -> web.StreamResponse:
            body = await _read_json(request)
            wanted = _letter_filter(body)
            status, answer = await op.replay_many(wanted, _int_field(body, "expected"))
            if status != 200:
                return auth.problem(
                    status, answer["title"], answer["detail"], count=answer["count"]
                )
            return json_response(answer)

    @app.page("/ops/api/deadletters/replay", name="ops-api-deadletters-replay")
    class OpsApiReplay(View):
        @answers
        async def post(self, request: web.Request) -> web.StreamResponse:
            body = await _read_json(request)
            status, answer = await op.replay(
                _int_field(body, "partition"), _int_field(body, "offset")
            )
            if status != 200:
                return auth.problem(status, answer["title"], answer["detail"])
            return json_response(answer)

    @app.page("/ops/api/flows", name="ops-api-flows")
    class OpsApiFlows(View):
        @answers
        async def get(self, request: web.Request) -> web.StreamResponse:
            return json_response(await op.flows())

    @app.page("/ops/api/trends", name="ops-api-trends")
    class OpsApiTrends(View):
        @answers
        async def get(self, request: web.Request) -> web.StreamResponse:
            if request.query.get("local") == "1":
                return json_response({"points": op.trends.points()})
            return json_response(await op.trend_points())

    @app.page("/ops/api/devices/{device_id}/enabled", name="ops-api-device-enabled")
    class OpsApiDeviceEnabled(View):
        @answers
        async def post(self, request: web.Request, device_id: str) -> web.StreamResponse:
            enabled = _enabled_field(await _read_json(request))
            return passed_on(*await op.admin_api.set_device_enabled(_device_id(device_id), enabled))

    @app.page("/ops/api/devices/{device_id}/rotate-token", name="ops-api-device-rotate")
    class OpsApiDeviceRotate(View):
        @answers
        async def post(self, request: web.Request, device_id: str) -> web.StreamResponse:
            return passed_on(*await op.admin_api.rotate_token(_device_id(device_id)))

    @app.page("/ops/api/flows/registry", name="ops-api-flows-registry")
    class OpsApiFlowRegistry(View):
        @answers
        async def get(self, request: web.Request) -> web.StreamResponse:
            return passed_on(*await op.admin_api.flows())

    @app.page("/ops/api/flows/{flow_id}/enabled", name="ops-api-flow-enabled")
    class OpsApiFlowEnabled(View):
        @answers
        async def post(self, request: web.Request, flow_id: str) -> web.StreamResponse:
            enabled = _enabled_field(await _read_json(request))
            return passed_on(*await op.admin_api.set_flow_enabled(flow_id, enabled))

    @app.page("/ops/api/flows/{flow_id}/dry-run", name="ops-api-flow-dry-run")
    class OpsApiFlowDryRun(View):
        @answers
        async def post(self, request: web.Request, flow_id: str) -> web.StreamResponse:
            return passed_on(*await op.admin_api.dry_run(flow_id, await _read_json(request)))

    @app.page("/ops/api/alerts/history", name="ops-api-alert-history")
    class OpsApiAlertHistory(View):
        @answers
        async def get(self, request: web.Request) -> web.StreamResponse:
            return json_response(await op.alerts(_alert_query(request.query)))

    @app.page("/ops/api/alerts", name="ops-api-alerts")
    class OpsApiAlerts(View):
        @answers
        async def get(self, request: web.Request) -> web.StreamResponse:
            return json_response(await op.alerts())

    @app.page("/ops/api/alerts/{alert_id}/ack", name="ops-api-alert-ack")
    class OpsApiAck(View):
        @answers
        async def post(self, request: web.Request, alert_id: str) -> web.StreamResponse:
            body = await _read_json(request)
            by = body.get("by", "operator")
            if not isinstance(by, str):
                raise _Invalid("by", "expected a string")
            return json_response(await op.acknowledge(alert_id, by))

    @app.page("/metrics", name="ops-metrics")
    class Metrics(View):
        async def get(self, request: web.Request) -> web.StreamResponse:
            body, content_type = await exposition(op)
            response = web.Response(body=body)
            response.headers["Content-Type"] = content_type
            return response
