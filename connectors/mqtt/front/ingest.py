"""What the MQTT front does with a device's CONNECT and PUBLISH: who it is, and where its
readings go (no sockets here; ``connectors.mqtt.front.connection`` speaks the protocol).

Identity comes from the device registry the front follows (``fleet.devices.v1``, the HTTP
edge's cache): the username is the device id, the password its token, the client id the
device id again (or empty: the front assigns it). So a connection can never take a session or
client id of other credentials, and registering, disabling, rotating or deleting a device costs
the front one cached record and takes effect on every instance as the registry topic is read.
A device publishes only on its own topics (``FLEET_MQTT__TOPICS``, the ``+`` is its id).

Seed 002's profile (``FLEET_COMPAT__SEEDS``) adds anonymous publishers (:class:`Anonymous`):
its own test connects without a username. Such a CONNECT is admitted only from a network of
``FLEET_COMPAT__TRUSTED_NETWORKS`` (the TCP peer), gets a session of its own that no other
connection can take over and that takes over none (``anonymous/<random>``, which no device id
can be), and may publish only on seed 002's topic, for a registered, enabled device named in
the topic, charged to that device's rate limit. Anyone on those networks can publish as any
registered device there.

Readings take the HTTP edge's path: the same decoder, event ids and envelope batcher, so a QoS 1
PUBACK is sent only after Kafka acked the reading with ``acks=all``. A payload that fails is a
dead letter (acked by Kafka before the PUBACK that says so). :meth:`Ingest.take` does a
publish's work at once and hands back what to wait for (the envelope's own future, shared by
the readings it holds): a connection takes its publishes in its read loop, without a task each.
"""

from __future__ import annotations

import asyncio
import ipaddress
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from connectors.kafka.errors import KafkaUnavailable, ProducerBackpressure
from connectors.kafka.producer import Record
from connectors.mqtt.front.packets import Connect
from connectors.mqtt.messages import TopicMatcher, dead_letter_record, decode_message
from schemas.catalogue import GenericLimits
from schemas.devices import Device

# MQTT 5 reason codes the front answers with.
SUCCESS = 0x00
UNSPECIFIED = 0x80
BAD_CLIENT_ID = 0x85
BAD_CREDENTIALS = 0x86
NOT_AUTHORIZED = 0x87
UNAVAILABLE = 0x88
QUOTA_EXCEEDED = 0x97
PAYLOAD_INVALID = 0x99

RESERVED_PREFIX = "fleetstream"
"""Client ids the system's own clients use; never a device's."""
ANONYMOUS_SESSION = "anonymous/"
"""Session key prefix of anonymous connections: a device id never holds a ``/``."""
SEED_002_TOPIC = "neurobuild/sensors/+/data"


class Registry(Protocol):
    """The device registry as the front reads it (``DeviceCache``)."""

    @property
    def caught_up(self) -> bool: ...
    def identify(self, token: str) -> Device | None: ...
    def get(self, record_id: str) -> Device | None: ...


class Batcher(Protocol):
    """The envelope batcher (``EnvelopeBatcher``): ``add`` places the items at once; its
    future is done when Kafka acked them (shared: never cancel it)."""

    def add(self, items: Sequence[tuple[str, bytes]]) -> asyncio.Future[None]: ...


Produce = Callable[[str, Sequence[Record]], Awaitable[None]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Limiter(Protocol):
    """A per-device rate limit (the API's ``RateLimiter``): ``None`` when granted."""

    def acquire(self, device_id: str, profile: str | None) -> float | None: ...


@dataclass(frozen=True)
class Anonymous:
    """Who may connect without a username, and where they may publish."""

    networks: Sequence[Network]
    topics: TopicMatcher
    limiter: Limiter

    def trusts(self, peer: str | None) -> bool:
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self.networks)


@dataclass(frozen=True)
class Admitted:
    device: Device | None
    """``None``: an anonymous publisher (:class:`Anonymous`)."""
    client_id: str
    """As the client gave it, or assigned (the device id) when it gave none; the session key."""


TOPICS_KEPT = 100_000
"""Topics whose device :class:`RememberedTopics` keeps (then it starts again)."""


class RememberedTopics(TopicMatcher):
    """A matcher's answers kept by topic: a device publishes on one topic over and over, and
    each publish asked the matcher twice (who may publish there, whose readings it holds)."""

    def __init__(self, matcher: TopicMatcher) -> None:
        self._matcher = matcher
        self._known: dict[str, str | None] = {}

    def device_id(self, topic: str) -> str | None:
        try:
            return self._known[topic]
        except KeyError:
            pass
        if len(self._known) >= TOPICS_KEPT:  # a bound, not an LRU: topics are one per device
            self._known.clear()
        found = self._known[topic] = self._matcher.device_id(topic)
        return found


class KafkaTrouble(Exception):
    """Kafka did not take the reading: no PUBACK may say it did."""


@dataclass
class Ingest:
    registry: Registry
    matcher: TopicMatcher
    batcher: Batcher
    produce: Produce
    deadletter_topic: str
    max_items: int
    max_bytes: int
    limits: GenericLimits
    anonymous: Anonymous | None = None
    _topics: TopicMatcher = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._topics = RememberedTopics(self.matcher)

    def admit(
        self, connect: Connect, peer: str | None = None, certified: str | None = None
    ) -> Admitted | int:
        """The device a CONNECT from ``peer`` authenticates, or the MQTT 5 reason to refuse it.
        ``certified``: the device id (CN) of a client certificate the TLS handshake verified."""
        if not self.registry.caught_up:
            return UNAVAILABLE
        if certified is not None:
            return self._admit_certified(connect, certified)
        if not connect.username and connect.password is None and self.anonymous is not None:
            if not self.anonymous.trusts(peer) or connect.client_id.startswith(RESERVED_PREFIX):
                return BAD_CREDENTIALS
            return Admitted(None, f"{ANONYMOUS_SESSION}{uuid.uuid4().hex}")
        if not connect.username or connect.password is None:
            return BAD_CREDENTIALS
        device = self.registry.identify(connect.password.decode("utf-8", "replace"))
        if device is None or device.device_id != connect.username:
            return BAD_CREDENTIALS
        if not device.is_enabled:
            return NOT_AUTHORIZED
        client_id = connect.client_id or device.device_id
        if client_id != device.device_id or client_id.startswith(RESERVED_PREFIX):
            return BAD_CLIENT_ID
        return Admitted(device, client_id)

    def _admit_certified(self, connect: Connect, device_id: str) -> Admitted | int:
        """A device certificate stands for the token while the registry has the device enabled
        (disabling or deleting the device revokes the certificate too); a username or token
        given as well must be that device's."""
        device = self.registry.get(device_id)
        if device is None or connect.username not in (None, "", device_id):
            return BAD_CREDENTIALS
        if connect.password is not None:
            holder = self.registry.identify(connect.password.decode("utf-8", "replace"))
            if holder is None or holder.device_id != device_id:
                return BAD_CREDENTIALS
        if not device.is_enabled:
            return NOT_AUTHORIZED
        client_id = connect.client_id or device.device_id
        if client_id != device.device_id:
            return BAD_CLIENT_ID
        return Admitted(device, client_id)

    def still_allowed(self, device: Device | None) -> bool:
        """The device is registered, enabled and holds the same token as when it connected
        (an anonymous publisher's devices are checked at each publish)."""
        if device is None:
            return True
        current = self.registry.get(device.device_id)
        return (
            current is not None and current.is_enabled and current.token_hash == device.token_hash
        )

    async def publish(
        self, device: Device | None, topic: str, payload: bytes, now: datetime
    ) -> int:
        """Take one PUBLISH; its MQTT 5 reason once Kafka acked what it became. Raises
        KafkaTrouble when Kafka did not take it."""
        reason, sending = self.take(device, topic, payload, now)
        if sending is not None:
            await self._kafka(asyncio.shield(sending))
        return reason

    def take(
        self, device: Device | None, topic: str, payload: bytes, now: datetime
    ) -> tuple[int, asyncio.Future[None] | None]:
        """Take one PUBLISH now: its MQTT 5 reason, and what Kafka must ack before that reason
        may be told (None: nothing was sent). A failed future means Kafka did not take it
        (:func:`not_taken` says how to count it)."""
        if device is None:
            return self._anonymous(topic, payload, now)
        if self._topics.device_id(topic) != device.device_id:
            return NOT_AUTHORIZED, None
        return self._take(device, topic, payload, now)

    def _anonymous(
        self, topic: str, payload: bytes, now: datetime
    ) -> tuple[int, asyncio.Future[None] | None]:
        """Seed 002's topic only, for a registered, enabled device, within its rate limit."""
        anonymous = self.anonymous
        device_id = anonymous.topics.device_id(topic) if anonymous is not None else None
        device = self.registry.get(device_id) if device_id else None
        if anonymous is None or device is None or not device.is_enabled:
            return NOT_AUTHORIZED, None
        if anonymous.limiter.acquire(device.device_id, device.profile) is not None:
            return QUOTA_EXCEEDED, None
        return self._take(device, topic, payload, now)

    def _take(
        self, device: Device, topic: str, payload: bytes, now: datetime
    ) -> tuple[int, asyncio.Future[None]]:
        try:
            decoded = decode_message(
                topic,
                payload,
                matcher=self._topics,
                received_at=now,
                max_items=self.max_items,
                max_bytes=self.max_bytes,
                limits=self.limits,
            )
        except Exception as exc:  # noqa: BLE001 - a ValidationFailure, or a value nobody foresaw
            letter = dead_letter_record(topic, payload, exc, now, device.device_id)
            return PAYLOAD_INVALID, asyncio.ensure_future(
                self.produce(self.deadletter_topic, [letter])
            )
        return SUCCESS, self.batcher.add(decoded.items)

    async def _kafka(self, sending: Awaitable[None]) -> None:
        try:
            await sending
        except (KafkaUnavailable, ProducerBackpressure) as exc:
            raise KafkaTrouble(str(exc)) from exc


def not_taken(error: BaseException) -> str:
    """The outcome a publish is counted under when Kafka's future failed with ``error``."""
    if isinstance(error, KafkaTrouble | KafkaUnavailable | ProducerBackpressure):
        return "kafka-unavailable"
    return "error"
