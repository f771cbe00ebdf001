"""TLS to Postgres, Redis, the S3 server and the schema registry (``make test-secure``): the
Postgres, Redis, S3Proxy and Apicurio of the secure tests' own stack, started by the stack code
in secure mode (``cli/stack/service_tls.py``, ``s3proxy.py``, ``apicurio.py``) on free ports
under a temporary stack home with its own CA (``tests/integration/secure_tools.py``), and the
project's clients configured as secure mode configures them (``cli/secure_mode.services_env``)."""

from __future__ import annotations

import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
import redis.exceptions

from cli.stack import probes
from cli.stack.certs import Pki
from connectors.blob.s3 import S3BlobStore
from connectors.postgres.pool import connect, create_pool
from connectors.redis.clients import async_client, writer_pipe
from connectors.schema_registry import SchemaRegistryError, client_for
from schemas.settings import PostgresSettings, Settings

pytestmark = pytest.mark.secure


@pytest.fixture(scope="module")
def tls_stack(secure_stack: Settings) -> Settings:
    """The secure stack's settings (clients on verify-full, Redis TLS, https to S3Proxy and
    Apicurio), as secure mode configures every process (``cli/secure_mode.services_env``)."""
    return secure_stack


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A CA that signed neither server."""
    pki = Pki(tmp_path_factory.mktemp("other-ca") / "pki")
    pki.ensure(lambda _: None, names=())
    return str(pki.ca_cert)


def _postgres(settings: Settings, **update: object) -> PostgresSettings:
    return settings.postgres.model_copy(update=update)


async def test_the_pool_reads_and_writes_over_verified_tls(tls_stack: Settings) -> None:
    assert tls_stack.postgres.sslmode == "verify-full"
    pool = await create_pool(tls_stack.postgres, min_size=1, max_size=2)
    try:
        async with pool.acquire() as conn:
            table = f"tls_{uuid.uuid4().hex[:8]}"
            await conn.execute(f"CREATE TEMP TABLE {table} (v text)")
            await conn.execute(f"INSERT INTO {table} VALUES ($1)", "over tls")  # noqa: S608
            assert await conn.fetchval(f"SELECT v FROM {table}") == "over tls"  # noqa: S608
            encrypted = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            assert await conn.fetchval(encrypted) is True
    finally:
        await pool.close()


async def test_postgres_refuses_another_ca_and_clear_text(
    tls_stack: Settings, other_ca: str
) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(_postgres(tls_stack, ssl_rootcert=other_ca))
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await connect(_postgres(tls_stack, sslmode="disable"))
    # require encrypts without checking whose certificate it is: another CA does not matter.
    unverified = await connect(_postgres(tls_stack, sslmode="require", ssl_rootcert=other_ca))
    await unverified.close()


@pytest.fixture
async def redis_client(tls_stack: Settings) -> AsyncIterator[redis.asyncio.Redis]:
    client = async_client(tls_stack.redis, socket_timeout=10, socket_connect_timeout=10)
    yield client
    await client.aclose()


async def test_redis_clients_read_and_write_over_verified_tls(
    tls_stack: Settings, redis_client: redis.asyncio.Redis
) -> None:
    assert tls_stack.redis.tls
    key = f"tls:{uuid.uuid4().hex}"
    await redis_client.set(key, "over tls")
    assert await redis_client.get(key) == b"over tls"
    pipe = writer_pipe(tls_stack.redis)
    try:
        replies = await pipe.execute([("SET", key, "from the sink"), ("GET", key)])
    finally:
        await pipe.close()
    assert replies[1] == b"from the sink"


async def test_redis_refuses_another_ca_and_clear_text(tls_stack: Settings, other_ca: str) -> None:
    port = tls_stack.redis.port
    wrong = async_client(tls_stack.redis.model_copy(update={"tls_cafile": other_ca}))
    with pytest.raises(redis.exceptions.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await wrong.ping()
    await wrong.aclose()
    plain = async_client(tls_stack.redis.model_copy(update={"tls": False}), socket_timeout=10)
    with pytest.raises(redis.exceptions.ConnectionError):
        await plain.ping()
    await plain.aclose()
    assert not probes.redis_ping(port, timeout_s=5)
    assert probes.redis_ping(port, timeout_s=5, tls_cafile=Path(tls_stack.redis.tls_cafile))


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_the_s3_store_writes_and_reads_over_verified_tls(tls_stack: Settings) -> None:
    assert tls_stack.blob.s3_endpoint.startswith("https://")
    store = S3BlobStore(tls_stack.blob)
    await store.open()
    try:
        key = f"tls/{uuid.uuid4().hex}"
        stored = await store.put(key, _chunks(b"over ", b"tls"), max_bytes=100)
        assert stored.size == 8
        assert b"".join([chunk async for chunk in store.get(key)]) == b"over tls"
        await store.delete(key)
    finally:
        await store.close()


async def test_the_s3_server_refuses_another_ca_and_clear_text(
    tls_stack: Settings, other_ca: str
) -> None:
    blob = tls_stack.blob
    plain = blob.model_copy(update={"s3_endpoint": blob.s3_endpoint.replace("https", "http")})
    for refused in (blob.model_copy(update={"s3_cafile": other_ca}), plain):
        store = S3BlobStore(refused)
        await store.open()
        try:
            assert not await store.ping(), refused.s3_endpoint
        finally:
            await store.close()


def test_the_registry_client_works_over_verified_tls(tls_stack: Settings) -> None:
    assert tls_stack.schema_registry.url.startswith("https://")
    subject = f"tls-{uuid.uuid4().hex}-value"
    schema = '{"type": "record", "name": "Tls", "fields": [{"name": "v", "type": "string"}]}'
    client = client_for(tls_stack)
    schema_id = client.register(subject, schema)
    assert client.lookup(subject, schema) == schema_id


def test_the_registry_refuses_another_ca_and_clear_text(tls_stack: Settings, other_ca: str) -> None:
    registry = tls_stack.schema_registry
    plain = registry.model_copy(update={"url": registry.url.replace("https", "http", 1)})
    for refused in (registry.model_copy(update={"cafile": other_ca}), plain):
        client = client_for(tls_stack.model_copy(update={"schema_registry": refused}))
        with pytest.raises(SchemaRegistryError, match="cannot be reached"):
            client.versions("anything-value")
