"""Where the system may connect on a user's behalf: flows' HTTP calls and RTSP cameras.

A flow definition or an RTSP request names a URL; left alone, that lets anyone with an admin
token (flows) or a camera's credentials (RTSP) reach the cloud metadata service, the stack's own
Postgres or Redis, or scan the plant network through our error messages. The guard refuses
loopback, private, link-local, multicast and reserved addresses, and the stack's own services,
unless ``FLEET_EGRESS__ALLOW`` names them (CIDRs, host names, or ``host:port``). It checks the
*resolved* address at connect time (a name that resolves to 127.0.0.1 is refused like the
address), on every connection, so a redirect or a DNS answer that changes cannot slip past it.

Kafka nodes of flows are held to a similar rule (:func:`kafka_target_refusal`): never a topic of
the pipeline itself, a table changelog or an internal topic.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from schemas.errors import FleetError
from schemas.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class EgressRefused(FleetError):
    """The target is not one the system may connect to on a user's behalf."""

    retriable = False


@dataclass(frozen=True)
class EgressPolicy:
    allowed_networks: tuple[Network, ...] = ()
    allowed_hosts: frozenset[str] = frozenset()
    """Host names (lower case) let through whatever they resolve to."""
    allowed_endpoints: frozenset[tuple[str, int]] = frozenset()
    """``(host or address, port)`` pairs let through, the stack's own services included."""
    own_services: frozenset[tuple[str, int]] = frozenset()
    """``(address, port)`` of the stack's services: refused unless named as an endpoint."""

    @classmethod
    def from_settings(cls, settings: Settings) -> EgressPolicy:
        networks, hosts, endpoints = parse_allow(settings.egress.allow)
        return cls(networks, hosts, endpoints, own_services(settings))

    def refusal(self, host: str, address: str, port: int) -> str | None:
        """Why ``host`` (resolved to ``address``) on ``port`` is refused, or None."""
        host = host.lower().rstrip(".")
        ip = ipaddress.ip_address(address)
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        ip = mapped or ip
        if (host, port) in self.allowed_endpoints or (str(ip), port) in self.allowed_endpoints:
            return None
        if (str(ip), port) in self.own_services or (host, port) in self.own_services:
            return f"{host}:{port} is one of the system's own services"
        if host in self.allowed_hosts or any(ip in net for net in self.allowed_networks):
            return None
        if not ip.is_global or ip.is_multicast:
            return f"{host} resolves to {ip}, a {_kind(ip)} address (FLEET_EGRESS__ALLOW)"
        return None

    async def resolve(self, host: str, port: int) -> list[str]:
        """The addresses of ``host`` that may be connected to; EgressRefused when none."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except socket.gaierror as exc:
            raise EgressRefused(f"{host} does not resolve: {exc.strerror}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        refusals = [self.refusal(host, address, port) for address in addresses]
        allowed = [a for a, why in zip(addresses, refusals, strict=True) if why is None]
        if not allowed:
            raise EgressRefused(next(why for why in refusals if why) or f"{host}: no address")
        return allowed


def _kind(ip: Address) -> str:
    for kind, flag in (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("private", ip.is_private),
        ("multicast", ip.is_multicast),
    ):
        if flag:
            return kind
    return "reserved"


def parse_allow(
    text: str,
) -> tuple[tuple[Network, ...], frozenset[str], frozenset[tuple[str, int]]]:
    """``FLEET_EGRESS__ALLOW``: comma-separated CIDRs (or addresses), host names and
    ``host:port`` pairs. ValueError names an entry that is none of these."""
    networks: list[Network] = []
    hosts: set[str] = set()
    endpoints: set[tuple[str, int]] = set()
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        host, sep, port = entry.rpartition(":")
        if sep and port.isdigit() and host and ":" not in host:
            endpoints.add((host.lower(), int(port)))
        elif all(part.isalnum() or part.replace("-", "").isalnum() for part in entry.split(".")):
            hosts.add(entry.lower().rstrip("."))
        else:
            raise ValueError(f"FLEET_EGRESS__ALLOW: {entry!r} is no CIDR, host name or host:port")
    return tuple(networks), frozenset(hosts), frozenset(endpoints)


def own_services(settings: Settings) -> frozenset[tuple[str, int]]:
    """``(host, port)`` of every service the system itself runs or uses."""
    pairs: set[tuple[str, int]] = {
        (settings.postgres.host, settings.postgres.port),
        (settings.redis.host, settings.redis.port),
        (settings.mqtt.host, settings.mqtt.port),
        (settings.api.host, settings.api.port),
        (settings.worker.web_host, settings.worker.web_port),
        ("127.0.0.1", settings.stack.kafka_controller_port),
    }
    pairs |= set(_host_ports(settings.kafka.bootstrap_servers.split(",")))
    for url in (settings.schema_registry.url, settings.blob.s3_endpoint):
        parts = urlsplit(url)
        if parts.hostname:
            pairs.add((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)))
    return frozenset((host.lower(), port) for host, port in pairs)


def _host_ports(entries: Iterable[str]) -> Iterable[tuple[str, int]]:
    for entry in entries:
        host, _, port = entry.strip().rpartition(":")
        if host and port.isdigit():
            yield host, int(port)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to addresses the policy lets through; TLS
    still verifies the host name (httpcore passes it as the server name)."""

    def __init__(self, policy: EgressPolicy) -> None:
        self.policy = policy
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self.policy.resolve(host, port)
        except EgressRefused as exc:
            raise httpcore.ConnectError(f"egress refused: {exc}") from exc
        return await self._backend.connect_tcp(
            addresses[0], port, timeout, local_address, socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("egress refused: unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def guarded_client(policy: EgressPolicy, *, max_connections: int) -> httpx.AsyncClient:
    """An httpx client whose every connection passes the policy (redirects are not followed:
    the caller sees a 3xx as the answer)."""
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=max_connections))
    transport._pool = httpcore.AsyncConnectionPool(  # the one seam httpx offers for a backend
        max_connections=max_connections, network_backend=GuardedBackend(policy)
    )
    return httpx.AsyncClient(transport=transport, follow_redirects=False)


def literal_url_refusal(url: str, policy: EgressPolicy) -> str | None:
    """Why ``url`` is refused when its host is an address literal or ``localhost`` (checked
    without resolving: a template or a name is checked when the call connects), or None."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host or "{" in host:
        return None
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if host == "localhost" or host.endswith(".localhost"):
        return policy.refusal(host, "127.0.0.1", port)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return policy.refusal(host, host, port)


def kafka_target_refusal(topic: str, settings: Settings) -> str | None:
    """Why a flow's Kafka node may not produce to ``topic``, or None."""
    own = set(settings.topics.model_dump().values())
    app_id = settings.worker.app_id
    if topic in own:
        return f"{topic} is one of the pipeline's own topics"
    if topic.startswith(("__", "_", f"{app_id}-")) or topic.endswith(
        ("-changelog", "-repartition")
    ):
        return f"{topic} is an internal topic (table changelogs, Kafka's own)"
    return None


def refuse_kafka_targets(topics: Sequence[str], settings: Settings) -> None:
    for topic in topics:
        why = kafka_target_refusal(topic, settings)
        if why is not None:
            raise EgressRefused(why)
