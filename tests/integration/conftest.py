"""Fixtures on the real local stack: Kafka, Postgres, Redis, Mosquitto.

The session fixture starts the stack (idempotent; fast when it already runs) and migrates a test
database. A service that cannot be reached fails the run: these tests never skip. Every test gets
fresh uuid topics and its own consumer group, and its own device ids for rows in Postgres.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from api.app import create_app
from cli.stack import manager
from connectors.kafka.admin import delete_app_topics, delete_topics, ensure_topics
from connectors.postgres import migrate
from connectors.postgres.pool import connect
from schemas.settings import EgressSettings, Settings, get_settings
from streams.topology import topic_specs
from tests.integration.fleet import Fleet
from tests.integration.processes import WorkerProcess
from tests.support import isolated

TEST_DATABASE = "fleetstream_test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that stop a stack service run last, so they cannot disturb the others."""
    items.sort(key=lambda item: item.get_closest_marker("disruptive") is not None)
    for item in items:
        item.add_marker(pytest.mark.integration)


TEST_STATE_INTERVAL_S = 5.0
"""Rollups and held status rows written every 5 s rather than the product's 30: tests wait for
rollups, table rows and acks, and would only wait longer (decision 40)."""


@pytest.fixture(scope="session")
def stack_settings() -> Settings:
    base = get_settings()
    settings = base.model_copy(
        update={
            "environment": "test",
            "postgres": base.postgres.model_copy(update={"database": TEST_DATABASE}),
            "stream": base.stream.model_copy(
                update={"rollup_publish_interval_s": TEST_STATE_INTERVAL_S}
            ),
        }
    )
    manager.up(settings, progress=lambda line: print(f"stack: {line}"))
    asyncio.run(_create_database(base, TEST_DATABASE))
    migrate.upgrade(settings.postgres)
    return settings


@pytest.fixture(scope="session")
def secure_stack(
    stack_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Settings]:
    """Secure mode's services of the secure tests' own, shared by them (``secure_tools``)."""
    from tests.integration.secure_tools import start_secure_stack

    yield from start_secure_stack(stack_settings, tmp_path_factory.mktemp("secure-stack"))


async def _create_database(settings: Settings, name: str) -> None:
    conn = await connect(settings.postgres)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if not exists:
            await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


LOOPBACK = "127.0.0.0/8"


@pytest.fixture
def pipeline(stack_settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Settings with fresh uuid topics, consumer group and Faust data dir; topics created."""
    settings = isolated(stack_settings, "test", tmp_path / "faust", sink_batch_max=200)
    settings = settings.model_copy(
        update={
            "kafka": settings.kafka.model_copy(update={"partitions": 3}),
            # the tests' own receivers and cameras listen on loopback (the stack's services
            # stay refused); tests of the guard itself take this off
            "egress": EgressSettings(allow=LOOPBACK),
        }
    )
    specs = topic_specs(settings)
    ensure_topics(settings.kafka.bootstrap_servers, specs)
    yield settings
    delete_topics(settings.kafka.bootstrap_servers, [spec.name for spec in specs])
    delete_app_topics(settings.kafka.bootstrap_servers, settings.worker.app_id)


@pytest.fixture
def worker(pipeline: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A started worker on the pipeline's topics; stopped (by its pid) after the test."""
    process = WorkerProcess(pipeline, tmp_path / "worker.log")
    process.start()
    yield process
    process.stop()


@pytest.fixture
def worker_factory(pipeline: Settings, tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    """Workers the test starts itself (e.g. to kill one); all stopped after the test."""
    started: list[WorkerProcess] = []
    yield started
    for process in started:
        process.stop()


@pytest.fixture
async def api_client(pipeline: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API in-process (real producer, real broker), driven through ASGI."""
    app = create_app(pipeline)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://fleet.test") as client:
            yield client


@pytest.fixture
def fleet(api_client: httpx.AsyncClient) -> Fleet:
    """Devices registered through ``api_client``'s admin API, posting with their own tokens."""
    return Fleet(api_client)


@pytest.fixture
async def db(stack_settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(stack_settings.postgres)
    yield conn
    await conn.close()
