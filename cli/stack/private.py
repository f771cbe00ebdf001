"""A stack of one's own: services started by the stack code on free ports under another home.

Tests and benchmarks that need a broker or a Postgres the shared stack cannot be (secure mode,
TLS only, a clean cluster) start one here, plain or secure, with the same code and
configuration as ``fleetstream stack up``, and stop it by its pids afterwards. Only the shared
stack's built artefacts are copied (Kafka's and S3Proxy's jars, Apicurio's build), to skip
Maven; the shared stack's services are never touched.

The settings it yields are those its clients use: in secure mode Kafka as the super user
``admin``, and Postgres, Redis, S3Proxy and Apicurio over TLS trusting the stack's CA, exactly as
``fleetstream run`` configures its children (``cli/secure_mode.py``).
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from cli import secure_mode
from cli.stack import manager
from cli.stack.apicurio import Apicurio
from cli.stack.kafka import JARS as KAFKA_JARS
from cli.stack.kafka_security import ADMIN, principal_kafka
from cli.stack.postgres import FALLBACK_ROOT, Postgres
from cli.stack.s3proxy import JARS as S3PROXY_JARS
from cli.stack.service import Progress
from schemas.settings import Settings

SERVICES = ("kafka", "postgres", "redis", "s3proxy", "apicurio")
KAFKA_HEAP = "512m"


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:  # all bound at once, so no port is handed out twice
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def private_settings(
    base: Settings,
    home: Path,
    services: Sequence[str],
    *,
    secure: bool,
    kafka_heap: str = KAFKA_HEAP,
) -> Settings:
    """``base`` with a stack under ``home`` whose ``services`` listen on free ports (one
    Kafka node, in secure mode when ``secure``); the settings the stack code starts it with."""
    broker, controller, postgres, redis, s3, registry = free_ports(6)
    update: dict[str, Any] = {
        "stack": base.stack.model_copy(
            update={
                "home": home,
                "secure": secure,
                "kafka_brokers": 1,
                "kafka_controller_port": controller,
                "kafka_heap": kafka_heap,
            }
        )
    }
    if "kafka" in services:
        kafka = {"bootstrap_servers": f"127.0.0.1:{broker}"}
        update["kafka"] = base.kafka.model_copy(update=kafka)
    if "postgres" in services:
        update["postgres"] = base.postgres.model_copy(update={"port": postgres})
    if "redis" in services:
        update["redis"] = base.redis.model_copy(update={"port": redis})
    if "s3proxy" in services:
        blob = {"backend": "s3", "s3_endpoint": f"http://127.0.0.1:{s3}"}
        update["blob"] = base.blob.model_copy(update=blob)
    if "apicurio" in services:
        url = f"http://127.0.0.1:{registry}/apis/ccompat/v7"
        update["schema_registry"] = base.schema_registry.model_copy(update={"url": url})
    return base.model_copy(update=update)


def as_clients_see_it(settings: Settings, services: Sequence[str]) -> Settings:
    """``settings`` as the clients of its stack use them: in secure mode, Kafka as ``admin``
    (when the stack has a broker) and the TLS variables ``fleetstream run`` gives every child
    (:func:`cli.secure_mode.services_env`); in plain mode unchanged."""
    if not settings.stack.secure:
        return settings
    sections: dict[str, dict[str, str]] = {}
    for name, value in secure_mode.services_env(settings).items():
        section, field = name.removeprefix("FLEET_").lower().split("__")
        sections.setdefault(section, {})[field] = value
    update: dict[str, Any] = {
        section: type(getattr(settings, section)).model_validate(
            {**getattr(settings, section).model_dump(), **fields}
        )
        for section, fields in sections.items()
    }
    if "kafka" in services:
        update["kafka"] = principal_kafka(settings, ADMIN)
    return settings.model_copy(update=update)


def copy_builds(base: Settings, home: Path, services: Sequence[str]) -> None:
    """The shared stack's jars and builds of ``services`` copied under ``home`` (no Maven)."""
    shared = base.stack.home
    if "kafka" in services and KAFKA_JARS.ready(shared / "kafka" / "lib", base.stack.kafka_version):
        shutil.copytree(shared / "kafka" / "lib", home / "kafka" / "lib")
    s3_lib = shared / "s3proxy" / "lib"
    if "s3proxy" in services and S3PROXY_JARS.ready(s3_lib, base.stack.s3proxy_version):
        shutil.copytree(s3_lib, home / "s3proxy" / "lib")
    build = Apicurio(base).build_dir
    if "apicurio" in services and build.is_dir():
        shutil.copytree(build, home / "apicurio" / "build")


@contextmanager
def private_stack(
    base: Settings,
    home: Path,
    services: Sequence[str],
    *,
    secure: bool,
    progress: Progress,
    kafka_heap: str = KAFKA_HEAP,
) -> Iterator[Settings]:
    """``services`` running under ``home`` (plain or secure), as their clients see them;
    stopped by their pids and the Postgres cluster removed afterwards."""
    unknown = set(services) - set(SERVICES)
    if unknown:
        raise ValueError(f"not services of a private stack: {sorted(unknown)}")
    settings = private_settings(base, home, services, secure=secure, kafka_heap=kafka_heap)
    copy_builds(base, home, services)
    cluster = Postgres(settings).cluster_dir if "postgres" in services else None
    try:
        manager.up(settings, list(services), progress=progress)
        yield as_clients_see_it(settings, services)
    finally:
        manager.down(settings, list(services), progress=progress)
        if cluster is not None and cluster.parent == FALLBACK_ROOT:
            shutil.rmtree(cluster, ignore_errors=True)
