"""Which TLS settings give which client arguments (connectors/tls.py) and that every client
builder of Postgres, Redis, the registry and S3 passes them on."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import asyncpg
import certifi
import pytest

from connectors.postgres import pool as pool_module
from connectors.redis.clients import async_client, sync_client, writer_pipe
from connectors.schema_registry import client_for
from connectors.tls import (
    postgres_ssl,
    redis_client_options,
    redis_ssl,
    registry_verify,
    s3_verify,
)
from schemas.settings import (
    BlobSettings,
    PostgresSettings,
    RedisSettings,
    SchemaRegistrySettings,
    Settings,
)


@pytest.fixture
def one_ca(tmp_path: Path) -> Path:
    """A PEM file holding exactly one CA certificate (the first of certifi's bundle)."""
    bundle = Path(certifi.where()).read_text(encoding="ascii")
    end = "-----END CERTIFICATE-----"
    first = bundle[bundle.index("-----BEGIN CERTIFICATE-----") : bundle.index(end) + len(end)]
    path = tmp_path / "ca.pem"
    path.write_text(first + "\n", encoding="ascii")
    return path


def _only_ca(context: ssl.SSLContext, ca: Path) -> None:
    """``context`` trusts ``ca`` and nothing else (the file, not the system's CAs)."""
    loaded = context.get_ca_certs(binary_form=True)
    assert loaded == [ssl.PEM_cert_to_DER_cert(ca.read_text(encoding="ascii"))]


def test_postgres_disable_asks_for_no_tls() -> None:
    assert postgres_ssl(PostgresSettings()) is False


def test_postgres_require_encrypts_without_verifying() -> None:
    context = postgres_ssl(PostgresSettings(sslmode="require", ssl_rootcert="/nowhere.pem"))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_NONE
    assert context.check_hostname is False


def test_postgres_verify_ca_checks_the_chain_but_not_the_name(one_ca: Path) -> None:
    context = postgres_ssl(PostgresSettings(sslmode="verify-ca", ssl_rootcert=str(one_ca)))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False
    _only_ca(context, one_ca)


def test_postgres_verify_full_checks_the_chain_and_the_name(one_ca: Path) -> None:
    context = postgres_ssl(PostgresSettings(sslmode="verify-full", ssl_rootcert=str(one_ca)))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    _only_ca(context, one_ca)


def test_postgres_verify_full_with_a_missing_root_certificate_fails_loudly() -> None:
    with pytest.raises(FileNotFoundError):
        postgres_ssl(PostgresSettings(sslmode="verify-full", ssl_rootcert="/nowhere/ca.pem"))


async def test_every_pool_and_connection_gets_the_tls_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []

    async def fake(dsn: str, **kwargs: Any) -> object:
        calls.append((dsn, kwargs))
        return object()

    monkeypatch.setattr(asyncpg, "create_pool", fake)
    monkeypatch.setattr(asyncpg, "connect", fake)
    postgres = PostgresSettings(sslmode="require")
    await pool_module.create_pool(postgres, database="other")
    await pool_module.connect(postgres)
    assert [dsn.rsplit("/", 1)[1] for dsn, _ in calls] == ["other", "fleetstream"]
    for _, kwargs in calls:
        assert kwargs["ssl"].verify_mode == ssl.CERT_NONE


def test_redis_without_tls_is_clear_text() -> None:
    settings = RedisSettings(host="h", port=1, db=2, tls_cafile="/x.pem")
    assert redis_ssl(settings) is None
    assert redis_client_options(settings) == {"host": "h", "port": 1, "db": 2}


def test_redis_with_tls_verifies_the_certificate_and_the_name(one_ca: Path) -> None:
    settings = RedisSettings(tls=True, tls_cafile=str(one_ca))
    options = redis_client_options(settings)
    assert options["ssl"] is True
    assert options["ssl_ca_certs"] == str(one_ca)
    assert options["ssl_cert_reqs"] == "required"
    assert options["ssl_check_hostname"] is True
    context = redis_ssl(settings)
    assert context is not None
    assert context.check_hostname is True
    assert context.verify_mode == ssl.CERT_REQUIRED
    _only_ca(context, one_ca)


def test_redis_clients_and_the_sink_pipe_take_the_tls_settings(one_ca: Path) -> None:
    settings = RedisSettings(tls=True, tls_cafile=str(one_ca), port=6390)
    for client in (async_client(settings), sync_client(settings)):
        kwargs = client.connection_pool.connection_kwargs
        assert kwargs["port"] == 6390
        assert kwargs["ssl_ca_certs"] == str(one_ca)
        assert kwargs["ssl_check_hostname"] is True
    pipe = writer_pipe(settings)
    assert pipe._tls is not None
    assert pipe._tls.check_hostname is True
    assert writer_pipe(RedisSettings())._tls is None


def test_registry_uses_its_ca_only_for_https(one_ca: Path) -> None:
    https = SchemaRegistrySettings(url="https://registry:8443/apis", cafile=str(one_ca))
    context = registry_verify(https)
    assert isinstance(context, ssl.SSLContext)
    _only_ca(context, one_ca)
    assert registry_verify(SchemaRegistrySettings(cafile=str(one_ca))) is True
    assert registry_verify(SchemaRegistrySettings(url="https://registry/apis")) is True


def test_registry_client_carries_the_verification(one_ca: Path) -> None:
    settings = Settings(
        schema_registry=SchemaRegistrySettings(url="https://r:8443/apis", cafile=str(one_ca))
    )
    verify = client_for(settings).verify
    assert isinstance(verify, ssl.SSLContext)
    _only_ca(verify, one_ca)


def test_s3_uses_its_ca_only_for_https(one_ca: Path) -> None:
    https = BlobSettings(s3_endpoint="https://s3:9443", s3_cafile=str(one_ca))
    assert s3_verify(https) == str(one_ca)
    assert s3_verify(BlobSettings(s3_cafile=str(one_ca))) is None
    assert s3_verify(BlobSettings(s3_endpoint="https://s3:9443")) is None
