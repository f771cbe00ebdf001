"""How our clients of Postgres, Redis, the schema registry and the S3 server use TLS.

One function per service turns its settings into what its client library takes; every client
of that service is built with it (``connectors.postgres.pool``, ``connectors.redis.clients``,
``connectors.schema_registry.client_for``, ``connectors.blob.s3``), so a setting is honoured
everywhere or nowhere. With the defaults (``sslmode=disable``, ``tls=false``, http URLs) they
add nothing: clients connect in clear text as before. Kafka's clients have their own module
(``connectors/kafka/security.py``).
"""

from __future__ import annotations

import ssl
from typing import Any

from schemas.settings import BlobSettings, PostgresSettings, RedisSettings, SchemaRegistrySettings


def postgres_ssl(postgres: PostgresSettings) -> ssl.SSLContext | bool:
    """asyncpg's ``ssl=`` argument for ``postgres.sslmode`` (libpq's meanings).

    ``False`` (disable) never asks for TLS. ``require`` encrypts but trusts any certificate,
    as libpq's ``require`` without a root certificate does. ``verify-ca`` checks the chain
    against ``ssl_rootcert`` (or the system's CAs); ``verify-full`` checks the host name too.
    """
    mode = postgres.sslmode
    if mode == "disable":
        return False
    if mode == "require":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    context = ssl.create_default_context(cafile=postgres.ssl_rootcert or None)
    context.check_hostname = mode == "verify-full"
    return context


def redis_ssl(redis: RedisSettings) -> ssl.SSLContext | None:
    """The TLS context of a raw connection to Redis (``RedisPipe``); None: clear text."""
    if not redis.tls:
        return None
    return ssl.create_default_context(cafile=redis.tls_cafile or None)


def redis_client_options(redis: RedisSettings) -> dict[str, Any]:
    """redis-py's connection arguments (sync and asyncio clients): host, port, db and TLS."""
    options: dict[str, Any] = {"host": redis.host, "port": redis.port, "db": redis.db}
    if redis.tls:
        options |= {
            "ssl": True,
            "ssl_ca_certs": redis.tls_cafile or None,
            "ssl_cert_reqs": "required",
            "ssl_check_hostname": True,
        }
    return options


def registry_verify(registry: SchemaRegistrySettings) -> ssl.SSLContext | bool:
    """httpx's ``verify=`` for the registry: its CA file for an https URL, else the default."""
    return _https_verify(registry.url, registry.cafile)


def s3_verify(blob: BlobSettings) -> str | None:
    """aiobotocore's ``verify=``: the CA file for an https endpoint, else None (the default)."""
    if blob.s3_cafile and _is_https(blob.s3_endpoint):
        return blob.s3_cafile
    return None


def _https_verify(url: str, cafile: str) -> ssl.SSLContext | bool:
    if cafile and _is_https(url):
        return ssl.create_default_context(cafile=cafile)
    return True


def _is_https(url: str) -> bool:
    return url.lower().startswith("https://")
