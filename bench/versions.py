"""The versions of everything a benchmark measured, for the head of its block in RESULTS.md
(the services asked where they run)."""

from __future__ import annotations

import asyncio
import subprocess
from importlib import metadata
from pathlib import Path
from platform import python_version

import asyncpg
import confluent_kafka
import redis

from connectors.postgres.pool import connect
from connectors.redis.clients import sync_client
from schemas.settings import Settings


def versions(settings: Settings, *, quix: bool) -> dict[str, str]:
    """Versions of everything measured (services asked where they run)."""
    found = {
        "Python": python_version().removeprefix("Python "),
        "Kafka": settings.stack.kafka_version,
        "faust-streaming": metadata.version("faust-streaming"),
        "aiokafka": metadata.version("aiokafka"),
        "confluent-kafka": f"{metadata.version('confluent-kafka')} "
        f"(librdkafka {confluent_kafka.libversion()[0]})",
        "PostgreSQL": _postgres_version(settings),
        "Redis": _redis_version(settings),
        "wrk": _wrk_version(),
    }
    if quix:
        from bench.baselines.suite import QUIX_VERSION

        found["quixstreams"] = QUIX_VERSION
    found["commit"] = _commit()
    return found


def _postgres_version(settings: Settings) -> str:
    async def ask() -> str:
        db = await connect(settings.postgres)
        try:
            return str(await db.fetchval("SHOW server_version"))
        finally:
            await db.close()

    try:
        return asyncio.run(ask()).split()[0]
    except (OSError, asyncpg.PostgresError):
        return "unknown"


def _redis_version(settings: Settings) -> str:
    client = sync_client(settings.redis)
    try:
        return str(client.info("server").get("redis_version", "unknown"))
    except redis.RedisError:
        return "unknown"
    finally:
        client.close()


def _wrk_version() -> str:
    try:
        done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)  # noqa: S607
    except OSError:
        return "not installed"
    words = (done.stdout + done.stderr).split()
    return words[1] if len(words) > 1 else "unknown"


def _commit() -> str:
    repo = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(  # noqa: S603
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],  # noqa: S607
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head
