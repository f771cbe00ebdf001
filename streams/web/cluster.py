"""What the operator views know, on one worker and across the app's workers.

Each worker answers for itself (:meth:`Operator.worker`: its partitions, its agents' rates, its
part of the device status table). The app's views ask every worker of the group — the members
the partition assignor lists with their web URLs — and add the answers up, so any worker's
pages show the whole app; a worker that does not answer is listed with its error. A single
device is looked up on the worker that owns its key (:meth:`Operator.device_state`), as
Faust's table routing does, with a header that stops a request from bouncing between two
workers that disagree during a rebalance.

Those requests carry the admin token, and the URLs come from the consumer group, where any
member advertises its own: a worker whose URL ``FLEET_WORKER__TRUSTED_URLS`` does not list
(:mod:`streams.web.trust`) is never called, and is shown as not trusted.

Kafka and Postgres are read here too: consumer lag (``streams.web.lag``), dead letters
(``streams.web.letters``), recent readings and alerts (``connectors.postgres``), replays
(``connectors.kafka.deadletters``). Blocking Kafka clients run in threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg

from connectors.kafka import deadletters as dlq
from connectors.kafka.errors import KafkaUnavailable
from connectors.postgres.alerts import AlertQuery, AlertRow, AlertStore
from connectors.postgres.latest import recent_readings
from connectors.postgres.pool import create_pool
from schemas.settings import CompatSettings
from streams.context import WorkerContext
from streams.metrics import METRICS, Key
from streams.tables import DEVICE_STATUS as STATUS_TABLE
from streams.web import devices
from streams.web.admin_api import AdminApi
from streams.web.device_pages import DeviceFilter, device_page
from streams.web.fronts import front_rows
from streams.web.lag import LagReader, PartitionLag
from streams.web.letters import LetterFilter, LetterFollower, LetterIndex
from streams.web.rates import RateWindow
from streams.web.trends import Reading, Trends, merge
from streams.web.trust import WorkerTrust

log = logging.getLogger(__name__)

ROUTED_HEADER = "X-Fleet-Routed"
FAN_OUT_TIMEOUT_S = 3.0
LAG_MAX_AGE_S = 3.0
RATE_SAMPLE_S = 2.0
RATE_WINDOW_S = 10.0
PREVIEW_SAMPLE = 5
"""Letters shown in a bulk replay's preview."""


class Operator:
    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self.app = ctx.app
        self.settings = ctx.settings
        self.rates: RateWindow[Key] = RateWindow(RATE_WINDOW_S)
        self.trust = WorkerTrust.parse(ctx.settings.worker.trusted_urls)
        self.letters = LetterIndex()
        self.admin_api = AdminApi(ctx.settings)
        self.trends = Trends(ctx.settings.topics.readings, ctx.settings.topics.deadletter)
        self.follower: LetterFollower | None = None
        self.started_at = datetime.now(UTC)
        self._lag_reader: LagReader | None = None
        self._lag: tuple[float, list[PartitionLag]] | None = None
        self._lag_lock = asyncio.Lock()
        self._http: aiohttp.ClientSession | None = None
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        topics = self.settings.topics
        self.follower = LetterFollower(
            self.settings.kafka.bootstrap_servers, topics.deadletter, self.letters
        )
        self.follower.start()

    def sample(self) -> None:
        self.rates.sample(time.monotonic(), METRICS.totals())

    async def sample_trend(self) -> None:
        """One point of this worker's trends (``streams.web.trends``)."""
        try:
            lag: int | None = sum(row.lag for row in await self.lag())
        except KafkaUnavailable:
            lag = None
        local = await devices.local_counts(self.app, self.settings.topics.curated)
        histogram = METRICS.reading_to_row
        self.trends.sample(
            Reading(
                wall=time.time(),
                monotonic=time.monotonic(),
                totals=METRICS.totals(),
                latency_bounds=histogram.bounds,
                latency_counts=histogram.counts(),
                lag=lag,
                devices=None
                if local is None
                else {"online": local.online, "offline": local.offline},
            )
        )

    async def trend_points(self) -> dict[str, Any]:
        """Every worker's trend points merged per slot; workers that did not answer listed."""
        errors: dict[str, str] = {}

        async def ask(url: str) -> list[dict[str, Any]]:
            if url == self.url:
                return self.trends.points()
            try:
                answer: dict[str, Any] = await self._get(url, "/ops/api/trends", {"local": "1"})
            except (NotTrusted, aiohttp.ClientError, TimeoutError, RemoteError) as exc:
                errors[url] = f"{type(exc).__name__}: {exc}"
                return []
            return list(answer["points"])

        answers = await asyncio.gather(*(ask(url) for url in sorted(self.members())))
        return {"points": merge(answers), "errors": errors, "started_at": self.started_at}

    async def close(self) -> None:
        if self.follower is not None:
            await asyncio.to_thread(self.follower.stop)
        if self._http is not None:
            await self._http.close()
        if self._pool is not None:
            await self._pool.close()
        await self.admin_api.close()

    @property
    def admin_token(self) -> str:
        return self.settings.auth.admin_token.get_secret_value()

    @property
    def url(self) -> str:
        return str(self.app.conf.canonical_url).rstrip("/")

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=FAN_OUT_TIMEOUT_S)
            )
        return self._http

    async def pool(self) -> asyncpg.Pool:
        async with self._pool_lock:
            if self._pool is None:
                pg = self.settings.postgres
                self._pool = await create_pool(pg, min_size=0, max_size=2)
            return self._pool

    # -- this worker -------------------------------------------------------------------------

    def worker(self, wanted: DeviceFilter | None = None) -> dict[str, Any]:
        """This worker: partitions, rates of its agents, its part of the status table (and of
        a device page, with a filter)."""
        rates = self.rates.rates()
        by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (kind, first, second), per_s in sorted(rates.items()):
            by_kind[kind].append({"name": first, "topic": second, "per_s": per_s})
        registry = {} if wanted is None else self.ctx.device_cache().documents()
        local = devices.local_devices(self.app, self.settings.topics.curated, wanted, registry)
        return {
            "url": self.url,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": self.started_at,
            "ready": local is not None,
            "waiting": METRICS.waiting_now(),
            "partitions": devices.assigned(self.app),
            "rates": dict(by_kind),
            "devices": None
            if local is None
            else {"online": local.online, "offline": local.offline, "more": local.more},
            "matches": [] if local is None else local.matches,
        }

    def members(self) -> dict[str, dict[str, list[int]]]:
        """Every worker of the group by web URL, with its active source partitions."""
        router = self.app.router
        found: dict[str, dict[str, list[int]]] = {self.url: {}}
        for url in router.tables_metadata() or {}:  # members owning table partitions
            found.setdefault(str(url).rstrip("/"), {})
        for url, topics in (router.external_topics_metadata() or {}).items():
            member = found.setdefault(str(url).rstrip("/"), {})
            for topic, partitions in topics.items():
                if "__assignor-__leader" not in topic:  # Faust's own leader election topic
                    member[topic] = sorted(partitions)
        return found

    # -- across workers ----------------------------------------------------------------------

    async def _get(self, url: str, path: str, params: Mapping[str, str] | None = None) -> Any:
        """Another worker's answer; NotTrusted, before any connection, for a URL the admin
        token may not go to."""
        why = None if url == self.url else self.trust.refusal(url)
        if why is not None:
            raise NotTrusted(why)
        headers = {"Authorization": f"Bearer {self.admin_token}", ROUTED_HEADER: "1"}
        async with self.http.get(f"{url}{path}", params=params, headers=headers) as answer:
            body = await answer.json(content_type=None)
            if answer.status >= 400:
                raise RemoteError(answer.status, body)
            return body

    async def workers(self, wanted: DeviceFilter | None = None) -> list[dict[str, Any]]:
        """Every worker's own answer (this one without a request), in URL order."""
        members = self.members()
        params = {} if wanted is None else {"page": "1", **wanted.as_query()}

        async def ask(url: str) -> dict[str, Any]:
            if url == self.url:
                return self.worker(wanted)
            try:
                answer: dict[str, Any] = await self._get(url, "/ops/api/worker", params)
            except NotTrusted as exc:
                return {"url": url, "error": str(exc), "ready": False, "trusted": False}
            except (aiohttp.ClientError, TimeoutError, RemoteError) as exc:
                return {"url": url, "error": f"{type(exc).__name__}: {exc}", "ready": False}
            return answer

        answers = await asyncio.gather(*(ask(url) for url in sorted(members)))
        for answer in answers:
            answer["source_partitions"] = members.get(answer["url"], {})
        return list(answers)

    async def lag(self) -> list[PartitionLag]:
        async with self._lag_lock:
            now = time.monotonic()
            if self._lag is not None and now - self._lag[0] < LAG_MAX_AGE_S:
                return self._lag[1]
            if self._lag_reader is None:
                self._lag_reader = LagReader(
                    self.settings.kafka.bootstrap_servers, self.settings.worker.app_id
                )
            rows = await asyncio.to_thread(self._lag_reader.read)
            self._lag = (now, rows)
            return rows

    async def overview(self) -> dict[str, Any]:
        workers = await self.workers()
        topics = self.settings.topics
        consumed: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        produced: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        online = offline = 0
        complete = True
        for worker in workers:
            rates = worker.get("rates", {})
            for row in rates.get("events", []):
                consumed[row["topic"]][row["name"]] += row["per_s"]
            for row in rates.get("produced", []):
                produced[row["topic"]][row["name"]] += row["per_s"]
            counts = worker.get("devices")
            if counts is None:
                complete = False
            else:
                online += counts["online"]
                offline += counts["offline"]
        readings_out = produced[topics.readings]["validate"]
        readings_in = readings_out + produced[topics.deadletter]["validate"]
        lag, lag_error = await self._lag_rows(workers)
        alerts, alerts_error = await self._active_alerts()
        fronts = await front_rows(self.http, self.settings.mqtt_front.health_urls())
        return {
            "generated_at": datetime.now(UTC),
            "readings": {"in_per_s": readings_in, "out_per_s": readings_out},
            "throughput": _throughput(consumed, produced),
            "devices": {"online": online, "offline": offline, "complete": complete},
            "dead_letters": {
                "last_hour": self.letters.per_stage(time.time()),
                "caught_up": self.follower is not None and self.follower.caught_up.is_set(),
            },
            "alerts": {"active": alerts, "error": alerts_error},
            "lag": lag,
            "lag_error": lag_error,
            "workers": [_worker_row(worker) for worker in workers],
            "mqtt_fronts": fronts,
            "compat": compat_summary(self.settings.compat),
        }

    async def _lag_rows(
        self, workers: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], str | None]:
        owners = {
            (topic, partition): worker["url"]
            for worker in workers
            for topic, partitions in worker.get("source_partitions", {}).items()
            for partition in partitions
        }
        try:
            rows = await self.lag()
        except KafkaUnavailable as exc:
            return [], str(exc)
        app_id = self.settings.worker.app_id
        return [
            {
                **asdict(row),
                "worker": owners.get((row.topic, row.partition)) if row.group == app_id else None,
            }
            for row in rows
        ], None

    async def _active_alerts(self) -> tuple[int | None, str | None]:
        try:
            page = await AlertStore(await self.pool()).list(AlertQuery(state="active", limit=1))
        except Exception as exc:  # noqa: BLE001 - shown on the page, not raised
            return None, f"{type(exc).__name__}: {exc}"
        return page.total, None

    # -- devices -----------------------------------------------------------------------------

    async def devices(self, wanted: DeviceFilter) -> dict[str, Any]:
        """One page of devices (``streams.web.device_pages``): status from every worker's
        partitions, names from the registry; registered devices never seen are listed too."""
        workers = await self.workers(wanted)
        return device_page(workers, self.ctx.device_cache().documents(), wanted)

    async def device_state(self, device_id: str, routed: bool) -> tuple[int, dict[str, Any]]:
        """The device's status-table entry, answered by the worker that owns its key."""
        if not devices.table_ready(self.app):
            return 503, {"status": "recovering", "device_id": device_id}
        if devices.owns(self.app, self.settings.topics.curated, device_id):
            state = devices.local_state(self.app, device_id)
            if state is None:
                return 404, {"status": "unknown", "device_id": device_id}
            return 200, {"status": "ok", "worker": self.url, **devices.state_json(state)}
        if routed:  # the sender thought we own it: a rebalance is in progress
            return 503, {"status": "recovering", "device_id": device_id}
        try:
            owner = str(self.app.router.key_store(STATUS_TABLE, device_id.encode())).rstrip("/")
        except (KeyError, TypeError):  # no assignment yet
            return 503, {"status": "recovering", "device_id": device_id}
        try:
            answer = await self._get(owner, f"/ops/api/devices/{device_id}/state")
        except NotTrusted as exc:
            return 503, {"status": "not trusted", "worker": owner, "detail": str(exc)}
        except RemoteError as exc:
            return exc.status, exc.body if isinstance(exc.body, dict) else {"status": "error"}
        except (aiohttp.ClientError, TimeoutError) as exc:
            return 503, {"status": "unreachable", "worker": owner, "detail": str(exc)}
        return 200, answer

    async def device(self, device_id: str) -> dict[str, Any]:
        status, state = await self.device_state(device_id, routed=False)
        registered = self.ctx.device_cache().get(device_id)
        readings, alerts, problems = [], [], {}
        try:
            pool = await self.pool()
            readings = [
                {
                    "event_id": r.event_id,
                    "ts": r.ts,
                    "received_at": r.received_at,
                    "sensors": r.sensors,
                }
                for r in await recent_readings(pool, device_id, 20)
            ]
            page = await AlertStore(pool).list(AlertQuery(device_id=device_id, limit=20))
            alerts = [_alert_json(row) for row in page.items]
        except Exception as exc:  # noqa: BLE001 - shown on the page, not raised
            problems["postgres"] = f"{type(exc).__name__}: {exc}"
        try:
            history = await asyncio.to_thread(
                devices.transitions,
                self.settings.kafka.bootstrap_servers,
                self.settings.topics.device_status,
                device_id,
            )
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            history = []
            problems["kafka"] = f"{type(exc).__name__}: {exc}"
        return {
            "device_id": device_id,
            "state": state,
            "state_status": status,
            "registry": None if registered is None else _registry_json(registered),
            "readings": readings,
            "history": [_change_json(change) for change in history],
            "alerts": alerts,
            "letters": [asdict(v) for v in self.letters.latest(20, device_id=device_id)],
            "problems": problems,
        }

    # -- dead letters, flows, alerts ---------------------------------------------------------

    def dead_letters(self, limit: int, wanted: LetterFilter) -> dict[str, Any]:
        matching = self.letters.matching(wanted)
        return {
            "items": [asdict(view) for view in matching[:limit]],
            "matching": len(matching),
            "last_hour": self.letters.per_stage(time.time()),
            "caught_up": self.follower is not None and self.follower.caught_up.is_set(),
        }

    def replay_preview(self, wanted: LetterFilter) -> dict[str, Any]:
        """What a bulk replay of ``wanted`` would touch: how many letters, and a few of them."""
        matching = self.letters.matching(wanted)
        return {
            "count": len(matching),
            "sample": [asdict(view) for view in matching[:PREVIEW_SAMPLE]],
            "scope": f"the newest {self.letters.keep} letters this worker follows",
        }

    async def replay_many(self, wanted: LetterFilter, expected: int) -> tuple[int, dict[str, Any]]:
        """Replay every letter ``wanted`` admits, if they are still the ``expected`` many the
        preview counted (409 otherwise: look again). Each letter goes as :meth:`replay` sends
        one; letters that cannot be replayed are listed with why, the others still go."""
        matching = self.letters.matching(wanted)
        if len(matching) != expected:
            return 409, {
                "title": "The letters changed",
                "detail": f"{len(matching)} letters match now, the preview counted {expected}",
                "count": len(matching),
            }
        replayed, skipped, readings = 0, [], 0
        for view in sorted(matching, key=lambda v: (v.failed_at, v.partition, v.offset)):
            status, answer = await self.replay(view.partition, view.offset)
            if status == 200:
                replayed += 1
                readings += answer["readings"]
            else:
                where = f"{view.partition}/{view.offset}"
                skipped.append({"position": where, "why": answer["detail"]})
        log.info(
            "bulk replay: %d letters, %d readings, %d skipped", replayed, readings, len(skipped)
        )
        return 200, {"letters": replayed, "readings": readings, "skipped": skipped}

    async def replay(self, partition: int, offset: int) -> tuple[int, dict[str, Any]]:
        """Replay the letter at ``partition``/``offset`` (the CLI's replay, for one letter)."""
        settings = self.settings
        kafka = settings.kafka
        letter = await asyncio.to_thread(
            dlq.read_letter_at,
            kafka.bootstrap_servers,
            settings.topics.deadletter,
            partition,
            offset,
        )
        if letter is None:
            return 404, {
                "title": "No such dead letter",
                "detail": f"nothing at {partition}/{offset}",
            }
        events, why = dlq.replayable(letter, settings.stream.max_replays)
        if why is not None:
            return 409, {"title": "Not replayable", "detail": why}
        records = await asyncio.to_thread(
            dlq.produce_replays,
            kafka.bootstrap_servers,
            settings.topics.raw,
            events,
            envelope_max_items=kafka.envelope_max_items,
            envelope_max_bytes=kafka.envelope_max_bytes,
        )
        log.info("replayed %d readings of dead letter %d/%d", len(events), partition, offset)
        return 200, {
            "readings": len(events),
            "records": records,
            "event_ids": [event.event_id for event in events],
        }

    async def flows(self) -> dict[str, Any]:
        """The flows in force with their counters, added up over the workers (``/flows/``)."""
        members = sorted(self.members())

        async def ask(url: str) -> tuple[str, Any]:
            try:
                return url, await self._get(url, "/flows/")
            except (aiohttp.ClientError, TimeoutError, RemoteError, NotTrusted) as exc:
                return url, exc

        merged: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        for url, answer in await asyncio.gather(*(ask(url) for url in members)):
            if isinstance(answer, BaseException):
                named = isinstance(answer, NotTrusted)
                errors[url] = str(answer) if named else f"{type(answer).__name__}: {answer}"
                continue
            for flow in answer.get("flows", []):
                row = merged.setdefault(
                    flow["flow_id"],
                    {**flow, "runs": 0, "errors": 0, "failed_calls": 0, "versions": {}},
                )
                for counter in ("runs", "errors", "failed_calls"):
                    row[counter] += flow.get(counter, 0)
                row["versions"][url] = flow["version"]
                row["version"] = max(row["version"], flow["version"])
        return {"items": sorted(merged.values(), key=lambda f: f["flow_id"]), "errors": errors}

    async def alerts(self, query: AlertQuery | None = None) -> dict[str, Any]:
        """Open alerts, or the history ``query`` asks for (newest first)."""
        wanted = query or AlertQuery(state="active", limit=200)
        page = await AlertStore(await self.pool()).list(wanted)
        return {"items": [_alert_json(row) for row in page.items], "total": page.total}

    async def acknowledge(self, alert_id: str, by: str) -> dict[str, Any]:
        """The API's acknowledgement (``POST /api/v1/alerts/{id}/ack`` is canonical): the same
        :meth:`AlertStore.acknowledge`, which checks ``by`` and keeps the first one."""
        return _alert_json(await AlertStore(await self.pool()).acknowledge(alert_id, by))


class NotTrusted(Exception):
    """A worker URL that the admin token may not be sent to; the message says why."""

    def __str__(self) -> str:
        return f"not trusted: {self.args[0]}"


class RemoteError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body


def _throughput(
    consumed: Mapping[str, Mapping[str, float]], produced: Mapping[str, Mapping[str, float]]
) -> list[dict[str, Any]]:
    rows = []
    for topic in sorted(set(consumed) | set(produced)):
        readers = consumed.get(topic, {})
        writers = produced.get(topic, {})
        rows.append(
            {
                "topic": topic,
                # every consuming agent reads every record: the topic's rate is the fastest one
                "in_per_s": max(readers.values(), default=0.0),
                "out_per_s": sum(writers.values()),
                "consumers": dict(sorted(readers.items())),
                "producers": dict(sorted(writers.items())),
            }
        )
    return rows


def compat_summary(compat: CompatSettings) -> dict[str, Any]:
    """The seed profiles on, and where their routes serve callers without credentials (the
    API and the MQTT front read the same settings: what they log at start-up)."""
    return {
        "seeds": sorted(compat.profiles()),
        "trusted_networks": [str(network) for network in compat.networks()],
    }


def _worker_row(worker: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "url": worker["url"],
        "trusted": worker.get("trusted", True),
        "error": worker.get("error"),
        "ready": worker.get("ready", False),
        "waiting": worker.get("waiting", {}),
        "host": worker.get("host"),
        "pid": worker.get("pid"),
        "partitions": worker.get("source_partitions") or worker.get("partitions", {}),
        "devices": worker.get("devices"),
    }


def _registry_json(device: Any) -> dict[str, Any]:
    return {
        "name": device.name,
        "profile": device.profile,
        "tags": list(device.tags),
        "enabled": device.is_enabled,
        "metadata": device.metadata,
        "inactivity_timeout_s": device.inactivity_timeout_s,
        "created_at": device.created_at,
    }


def _change_json(change: Any) -> dict[str, Any]:
    return {
        "seq": change.seq,
        "online": change.online,
        "reason": change.reason,
        "changed_at": change.changed_at,
        "last_seen": change.last_seen,
    }


def _alert_json(row: AlertRow) -> dict[str, Any]:
    return {
        "alert_id": row.alert_id,
        "rule_id": row.rule_id,
        "rule_version": row.rule_version,
        "rule_name": row.rule_name,
        "device_id": row.device_id,
        "severity": row.severity,
        "state": row.state,
        "fired_at": row.fired_at,
        "cleared_at": row.cleared_at,
        "value": row.value,
        "message": row.message,
        "acknowledged_at": row.acknowledged_at,
        "acknowledged_by": row.acknowledged_by,
    }
