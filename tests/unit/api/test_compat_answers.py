"""The seeds' documented answers (docs/compat.md), without a broker: the health fields of seeds
003 and 004, seed 002's ``/ready`` and its live-feed shape, seed 001's optional measurements and
its ``/latest`` id, seed 003's capture concurrency. Each with the profile off, the canonical
answer."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from types import SimpleNamespace
from typing import Any, cast

import httpx
import msgspec
import pytest
from fastapi import WebSocket

from api.compat_auth import CompatAuth
from api.live import LiveFeed
from api.media.rtsp import capture_limit
from api.routes import health, ws
from connectors.egress import EgressPolicy
from schemas.envelopes import curated_envelope
from schemas.events import CuratedReading
from schemas.seed_payloads import equipment_device_id, seed002_live_reading
from schemas.settings import CompatSettings, EgressSettings, Settings
from tests import clock
from tests.support import wait_until
from tests.unit.api.test_edge import TOKEN_EQ, _client, _equipment, _events, _settings
from tests.unit.api.test_live import CURATED, STATUS, SUBSCRIBE, StandInSocket, app_with
from tests.unit.api.test_readings import FakeProducer

NOW = clock.now()


def with_seeds(seeds: str, settings: Settings | None = None) -> Settings:
    base = settings or _settings()
    return base.model_copy(update={"compat": CompatSettings(seeds=seeds)})


class Check:
    """A dependency double: answers ``ok``, or never answers when ``hangs``."""

    def __init__(self, ok: bool = True, *, hangs: bool = False) -> None:
        self.ok, self.hangs, self.asked = ok, hangs, 0

    async def ping(self) -> bool:
        self.asked += 1
        if self.hangs:
            await asyncio.Event().wait()
        return self.ok


def client_with(
    settings: Settings, *, db: Check, blob: Check, redis: Check, producer: FakeProducer
) -> httpx.AsyncClient:
    client = _client(settings, producer)
    app = cast(httpx.ASGITransport, client._transport).app
    state = cast(Any, app).state
    state.device_registry = SimpleNamespace(store=db)
    state.media = SimpleNamespace(blob=blob)
    state.idempotency = redis
    return client


@pytest.fixture
def checks() -> dict[str, Check]:
    return {"db": Check(), "blob": Check(), "redis": Check()}


async def health_of(seeds: str, checks: dict[str, Check]) -> httpx.Response:
    async with client_with(with_seeds(seeds), producer=FakeProducer(), **checks) as client:
        return await client.get("/health")


# ---- /health ------------------------------------------------------------------------------------


async def test_health_is_unchanged_with_no_profile_or_one_that_names_no_field(
    checks: dict[str, Check],
) -> None:
    for seeds in ("", "000,001,002"):
        response = await health_of(seeds, checks)
        assert response.status_code == 200
        assert set(response.json()) == {"status", "time"}
    assert all(check.asked == 0 for check in checks.values())  # liveness asks nobody


async def test_seed004_health_carries_db_and_storage_writable_as_the_seed_documents(
    checks: dict[str, Check],
) -> None:
    response = await health_of("004", checks)
    assert response.status_code == 200
    answer = response.json()
    assert list(answer) == ["status", "db", "storage_writable", "time"]  # the seed's order
    assert (answer["status"], answer["db"], answer["storage_writable"]) == ("ok", True, True)
    assert checks["redis"].asked == 0


async def test_several_profiles_get_one_superset_document(checks: dict[str, Check]) -> None:
    answer = (await health_of("003,004", checks)).json()
    assert list(answer) == ["status", "db", "storage_writable", "redis", "time"]
    assert (await health_of("003", checks)).json().keys() == answer.keys()


@pytest.mark.parametrize("down", ["db", "blob", "redis"])
async def test_a_dependency_down_is_false_and_degraded_but_still_200(
    checks: dict[str, Check], down: str
) -> None:
    checks[down].ok = False
    response = await health_of("003,004", checks)
    assert response.status_code == 200
    answer = response.json()
    field = {"db": "db", "blob": "storage_writable", "redis": "redis"}[down]
    assert answer["status"] == "degraded" and answer[field] is False
    assert [name for name, ok in answer.items() if ok is False] == [field]


async def test_a_hung_dependency_counts_as_down_within_the_check_bound(
    checks: dict[str, Check], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "CHECK_TIMEOUT_S", 0.05)
    checks["db"] = Check(hangs=True)
    answer = (await asyncio.wait_for(health_of("004", checks), 10)).json()
    assert (answer["status"], answer["db"], answer["storage_writable"]) == (
        "degraded",
        False,
        True,
    )


# ---- seed 002's /ready --------------------------------------------------------------------------


async def test_ready_is_seed002s_probe_with_the_answer_of_health_ready(
    checks: dict[str, Check],
) -> None:
    producer = FakeProducer()
    async with client_with(with_seeds("002"), producer=producer, **checks) as client:
        ready, canonical = await client.get("/ready"), await client.get("/health/ready")
        assert ready.status_code == canonical.status_code == 200
        assert ready.json() == canonical.json()
        assert ready.json()["status"] == "ok"
        producer.fail_with = RuntimeError("broker away")
        assert (await client.get("/ready")).status_code == 503
    async with client_with(with_seeds("001,003"), producer=producer, **checks) as client:
        assert (await client.get("/ready")).status_code == 404  # not a canonical route


# ---- seed 001: optional measurements, the /latest id ------------------------------------------


async def test_seed001_vibration_and_pressure_are_optional() -> None:
    producer = FakeProducer()
    body = _equipment("PUMP-A1-001")
    del body["vibration"], body["pressure"]
    async with _client(_settings(), producer) as client:
        response = await client.post(
            "/api/v1/sensors/ingest", json=body, headers={"X-API-Key": TOKEN_EQ}
        )
        assert response.status_code == 201, response.text
    (event,) = _events(producer)
    sensors = json.loads(bytes(event.payload))["sensors"]
    assert sensors == {"equipment": {"temperature": 85.5, "humidity": 65.0}}


@pytest.mark.parametrize(
    ("without", "status"),
    [
        (("temperature", "vibration", "pressure"), 201),  # humidity alone is a measurement
        (("temperature", "vibration", "pressure", "humidity"), 422),  # no measurement at all
    ],
)
async def test_seed001_temperature_is_optional_but_a_reading_measures_something(
    without: tuple[str, ...], status: int
) -> None:
    body = _equipment("PUMP-A1-001")
    for field in without:
        del body[field]
    async with _client(_settings(), FakeProducer()) as client:
        response = await client.post(
            "/api/v1/sensors/ingest", json=body, headers={"X-API-Key": TOKEN_EQ}
        )
    assert response.status_code == status, response.text


class RecordingPool:
    """``fetch`` of the latest queries: records the device id asked for, finds nothing."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def fetch(self, _query: str, device_id: str, *_args: object) -> list[Any]:
        self.asked.append(device_id)
        return []


async def latest(path_id: str, *, devices: tuple[tuple[str, str], ...] = ()) -> tuple[Any, ...]:
    pool = RecordingPool()
    async with _client(_settings(), FakeProducer(), devices=devices) as client:
        cast(Any, cast(httpx.ASGITransport, client._transport).app).state.pg_pool = pool
        token = devices[0][1] if devices else TOKEN_EQ
        response = await client.get(
            f"/api/v1/sensors/{path_id}/latest", headers={"X-API-Key": token}
        )
    return response.status_code, response.json(), pool.asked


async def test_latest_reads_an_equipment_id_as_ingest_stores_it() -> None:
    status, answer, asked = await latest("pump-a1-001")
    assert status == 200, answer
    assert answer["equipment_id"] == "PUMP-A1-001"
    assert set(asked) == {"PUMP-A1-001"}  # the id the ingest route wrote the readings under


async def test_latest_keeps_a_registered_id_as_written() -> None:
    """A canonical device whose id happens to look like seed 001's keeps its own case."""
    status, answer, asked = await latest("room-lobby-001", devices=(("room-lobby-001", "t" * 20),))
    assert status == 200, answer
    assert set(asked) == {"room-lobby-001"}


def test_equipment_ids_are_upper_cased_and_other_ids_left_alone() -> None:
    assert equipment_device_id("pump-a1-001") == "PUMP-A1-001"
    assert equipment_device_id("esp32-lobby-01") == "esp32-lobby-01"  # not TYPE-LOCATION-NNN


# ---- seed 002's live feed -----------------------------------------------------------------------


def curated(device_id: str, n: int, **registry: Any) -> bytes:
    reading = CuratedReading(
        event_id=f"{device_id}-{n}",
        device_id=device_id,
        ts=NOW + timedelta(seconds=n),
        received_at=NOW + timedelta(seconds=n, milliseconds=5),
        source="http",
        sensors=msgspec.Raw(b'{"pir":{"motion_detected":true}}'),
        **registry,
    )
    return msgspec.json.encode(reading)


def test_seed002_reading_has_timestamp_and_device_metadata() -> None:
    item = curated("test-device", 0, location={"room": "lab"}, tags=["lab"], profile="esp32")
    data = msgspec.json.decode(seed002_live_reading(item))
    assert data["device_id"] == "test-device"
    assert data["sensors"]["pir"]["motion_detected"] is True
    assert data["timestamp"] == msgspec.json.decode(item)["ts"]
    assert data["device_metadata"] == {
        "profile": "esp32",
        "location": {"room": "lab"},
        "tags": ["lab"],
    }
    assert "ts" not in data
    bare = msgspec.json.decode(seed002_live_reading(curated("other", 1)))
    assert bare["device_metadata"] == {}  # the registry knows nothing of it: an empty object


async def test_the_seed002_port_and_ws_get_the_same_reading_in_their_own_shapes() -> None:
    feed = LiveFeed("unused:9092", CURATED, STATUS)
    app = app_with(feed, queue_max=100)
    seed = StandInSocket(app, [SUBSCRIBE], reads=True)
    canonical = StandInSocket(app, [SUBSCRIBE], reads=True)
    tasks = [
        asyncio.create_task(ws.seed002_live(cast(WebSocket, seed))),
        asyncio.create_task(ws.live(cast(WebSocket, canonical))),
    ]

    async def both() -> bool:
        return len(feed._subscribers) == 2 and all(s.active for s in feed._subscribers)

    await wait_until(both, timeout_s=5, what="two subscribed clients", poll_s=0.01)
    item = curated("test-device", 0, location={"room": "lab"})
    feed.dispatch((CURATED, None, curated_envelope([item, b'{"device_id":"x","sensors":{}}'])))

    async def delivered() -> bool:
        return seed.readings() >= 1 and canonical.readings() >= 2

    await wait_until(delivered, timeout_s=5, what="the readings", poll_s=0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    seed_data = [m["data"] for m in seed.sent if m["type"] == "sensor-data"]
    ours = [m["data"] for m in canonical.sent if m["type"] == "sensor-data"]
    assert len(seed_data) == 1  # the item that is no curated reading is skipped on the seed port
    assert seed_data[0]["timestamp"] == ours[0]["ts"]
    assert seed_data[0]["device_metadata"] == {"location": {"room": "lab"}}
    assert "device_metadata" not in ours[0] and "timestamp" not in ours[0]


async def test_the_seed002_port_asks_our_credentials_outside_the_trusted_networks() -> None:
    """Seed 002's clients send none: served from the trusted networks only (docs/compat.md)."""
    app = app_with(LiveFeed("unused:9092", CURATED, STATUS), queue_max=10)
    app.state.compat_auth = CompatAuth(
        CompatSettings(seeds="002", trusted_networks="127.0.0.0/8"),
        cast(Any, None), lambda: None,
    )  # fmt: skip
    for peer in (None, "10.20.0.7"):  # no peer address, an untrusted one
        anonymous = StandInSocket(app, [SUBSCRIBE], reads=True)
        anonymous.query_params = {}
        anonymous.client = None if peer is None else SimpleNamespace(host=peer)
        await asyncio.wait_for(ws.seed002_live(cast(WebSocket, anonymous)), 5)
        assert anonymous.closed is not None and anonymous.closed[0] == ws.UNAUTHORIZED


async def test_the_seed002_port_serves_a_trusted_client_without_credentials() -> None:
    feed = LiveFeed("unused:9092", CURATED, STATUS)
    app = app_with(feed, queue_max=10)
    app.state.compat_auth = CompatAuth(
        CompatSettings(seeds="002", trusted_networks="127.0.0.0/8"),
        cast(Any, None), lambda: None,
    )  # fmt: skip
    anonymous = StandInSocket(app, [SUBSCRIBE], reads=True)
    anonymous.query_params = {}
    anonymous.client = SimpleNamespace(host="127.0.0.1")
    serving = asyncio.create_task(ws.seed002_live(cast(WebSocket, anonymous)))

    async def watching_everything() -> bool:
        return [s.device for s in feed._subscribers] == [None]

    await wait_until(watching_everything, timeout_s=5, what="a subscriber of every device")
    serving.cancel()
    await asyncio.gather(serving, return_exceptions=True)
    assert anonymous.closed is None


async def test_ws_keeps_our_credentials_even_from_a_trusted_network() -> None:
    app = app_with(LiveFeed("unused:9092", CURATED, STATUS), queue_max=10)
    app.state.compat_auth = CompatAuth(
        CompatSettings(seeds="002", trusted_networks="127.0.0.0/8"),
        cast(Any, None), lambda: None,
    )  # fmt: skip
    anonymous = StandInSocket(app, [SUBSCRIBE], reads=True)
    anonymous.query_params = {}
    anonymous.client = SimpleNamespace(host="127.0.0.1")
    await asyncio.wait_for(ws.live(cast(WebSocket, anonymous)), 5)
    assert anonymous.closed is not None and anonymous.closed[0] == ws.UNAUTHORIZED


async def test_no_seed002_server_without_its_profile() -> None:
    app = SimpleNamespace(state=SimpleNamespace())
    async with ws.seed002_server(cast(Any, app), with_seeds("001,003")):
        pass  # nothing started: nothing to bind, nothing to stop


# ---- seed 003: capture concurrency --------------------------------------------------------------


def test_capture_concurrency_is_seed003s_10_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert capture_limit(Settings()) == 4
    assert capture_limit(with_seeds("003", Settings())) == 10
    assert capture_limit(with_seeds("001,002", Settings())) == 4
    monkeypatch.setenv("FLEET_MEDIA__RTSP_MAX_CONCURRENT", "4")
    monkeypatch.setenv("FLEET_COMPAT__SEEDS", "003")
    assert capture_limit(Settings()) == 4  # an operator's setting wins over the profile


def test_a_seed003_camera_network_is_reached_once_the_egress_allowlist_names_it() -> None:
    """docs/compat.md: a seed 003 deployment lists its camera subnet (or the camera's name)."""
    refused = EgressPolicy.from_settings(Settings())
    assert refused.refusal("camera", "10.20.30.5", 554) is not None
    for allow in ("10.20.30.0/24", "camera", "camera:554"):
        allowed = EgressPolicy.from_settings(Settings(egress=EgressSettings(allow=allow)))
        assert allowed.refusal("camera", "10.20.30.5", 554) is None, allow
    subnet = EgressPolicy.from_settings(Settings(egress=EgressSettings(allow="10.20.30.0/24")))
    assert subnet.refusal("nas", "10.20.40.5", 554) is not None  # the rest of the LAN stays shut


def test_the_websocket_port_is_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().compat.ws_port == 3001
    monkeypatch.setenv("FLEET_COMPAT__WS_PORT", "70000")
    with pytest.raises(ValueError, match="ws_port"):
        Settings()
