"""Which worker URLs may be sent the admin token.

A worker's operator views ask the other workers of the app for their part, and Faust's table
routing forwards a request to the worker that owns a key; both find those workers' URLs in the
consumer group's metadata, where every member advertises its own. Anyone who can join the group
can advertise any URL, so a request (which carries the admin token, or the browser's session
cookie that Faust forwards) goes only to a URL that ``FLEET_WORKER__TRUSTED_URLS`` lists; any
other member is shown as "not trusted" and not called.

The setting is a comma-separated list of ``scheme://host[:port]`` entries:

* ``scheme`` is ``http`` or ``https``, and must match;
* ``host`` is a name (``worker-1.fleet.internal``, compared without case), ``*.`` and a domain
  (any name under it, not the domain itself), an IP address (IPv6 in brackets), or an IP
  network in CIDR form (``10.20.0.0/16``, ``[fd00::/8]``);
* ``port`` is a number, ``*`` (any), or absent (the scheme's default, 80 or 443).

URLs are matched as advertised, with no DNS lookup: a name is trusted only if a name entry
matches it, an address only if an address or network entry holds it. A URL with user
information, or that does not parse, is never trusted. The worker's own URL is always trusted
(it is its own settings, ``FLEET_WORKER__WEB_HOST`` and ``FLEET_WORKER__WEB_PORT``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from faust.app.router import Router
from faust.web.exceptions import ServiceUnavailable

SETTING = "FLEET_WORKER__TRUSTED_URLS"
DEFAULT_PORTS = {"http": 80, "https": 443}
_ENTRY = re.compile(
    r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:./]+\]|[A-Za-z0-9*._-]+(?:/\d{1,3})?)"
    r"(?::(?P<port>\*|\d{1,5}))?/?"
)
_NAME = re.compile(r"[a-z0-9_]([a-z0-9_-]*)(\.[a-z0-9_-]+)*")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class TrustedEntry:
    """One entry of the setting."""

    scheme: str
    name: str | None = None
    """A host name (lower case); with ``subdomains``, the domain whose names are trusted."""
    subdomains: bool = False
    network: Network | None = None
    """An address (a /32 or /128) or a network."""
    port: int | None = None
    """None: any port."""

    def holds(self, scheme: str, host: str, port: int) -> bool:
        if scheme != self.scheme or (self.port is not None and port != self.port):
            return False
        address = _address(host)
        if address is not None:
            return self.network is not None and address in self.network
        if self.name is None:
            return False
        return host.endswith("." + self.name) if self.subdomains else host == self.name


@dataclass(frozen=True)
class WorkerTrust:
    entries: tuple[TrustedEntry, ...]

    @classmethod
    def parse(cls, text: str) -> WorkerTrust:
        """The setting's entries; ValueError naming the setting and the bad entry."""
        return cls(tuple(_entry(part.strip()) for part in text.split(",") if part.strip()))

    def refusal(self, url: str) -> str | None:
        """Why ``url`` may not be sent the admin token, or None when it may."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            return f"{url!r} is not a URL"
        scheme, host = parts.scheme.lower(), (parts.hostname or "").rstrip(".")
        if scheme not in DEFAULT_PORTS or not host:
            return f"{url!r} is not an http(s) URL"
        if parts.username is not None or parts.password is not None:
            return f"{url!r} carries user information"
        port = DEFAULT_PORTS[scheme] if port is None else port
        if any(entry.holds(scheme, host, port) for entry in self.entries):
            return None
        return f"{scheme}://{parts.netloc} is not listed in {SETTING}"


def same_origin(one: str, other: str) -> bool:
    """True when both URLs name the same scheme, host and port."""
    try:
        a, b = urlsplit(one), urlsplit(other)
        return (a.scheme, a.hostname, a.port or DEFAULT_PORTS.get(a.scheme)) == (
            b.scheme,
            b.hostname,
            b.port or DEFAULT_PORTS.get(b.scheme),
        )
    except ValueError:
        return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _entry(text: str) -> TrustedEntry:
    match = _ENTRY.fullmatch(text)
    if match is None:
        raise ValueError(f"{SETTING}: {text!r} is not scheme://host[:port] (port a number or *)")
    scheme, host, port_text = match["scheme"], match["host"].lower(), match["port"]
    if port_text == "*":
        port = None
    else:
        port = DEFAULT_PORTS[scheme] if port_text is None else int(port_text)
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"{SETTING}: {text!r} has no valid port")
    bare = host[1:-1] if host.startswith("[") else host
    try:
        network = ipaddress.ip_network(bare, strict=False)
    except ValueError:
        network = None
    if network is not None:
        return TrustedEntry(scheme, network=network, port=port)
    subdomains = host.startswith("*.")
    name = host[2:] if subdomains else host
    if not _NAME.fullmatch(name):
        raise ValueError(f"{SETTING}: {text!r} has no valid host (a name, *.domain, IP or CIDR)")
    return TrustedEntry(scheme, name=name, subdomains=subdomains, port=port)


RECOVERING = "recovering: the table's partitions are being assigned or restored"
"""Why a routed table request is refused while the worker's tables are not served yet."""


def trusted_router(trust: WorkerTrust) -> type[Router]:
    """Faust's router (``Router=``), forwarding a routed web request (``@app.table_route``,
    Faust's ``/table`` views) only to a worker whose URL ``trust`` lets through; to any other
    it answers 503. Faust forwards the request's headers as they are, credentials included."""

    class TrustedRouter(Router):
        async def route_req(self, table_name: str, key: Any, web: Any, request: Any) -> Any:
            try:
                destination = self.key_store(table_name, key)
            except (KeyError, TypeError) as exc:
                # KeyError: no worker owns the key's partition yet; TypeError: aiokafka has no
                # metadata of the changelog yet (a worker starting). Either way the table is
                # not served yet: 503 like the views' own "recovering", never a 500.
                raise ServiceUnavailable(RECOVERING) from exc
            self._check(str(destination))
            return await super().route_req(table_name, key, web, request)

        async def route_topic_req(self, topic: Any, key: Any, web: Any, request: Any) -> Any:
            try:
                destination = self.external_topic_key_store(topic, key)
            except KeyError as exc:
                raise ServiceUnavailable() from exc
            self._check(str(destination))
            return await super().route_topic_req(topic, key, web, request)

        def _check(self, destination: str) -> None:
            if same_origin(destination, str(self.app.conf.canonical_url)):
                return  # this worker: Faust answers here
            why = trust.refusal(destination)
            if why is not None:
                raise ServiceUnavailable(f"the worker that owns the key is not trusted: {why}")

    return TrustedRouter
