"""Device credentials in the broker: a dynamic-security client per registered device.

A device logs in with username = its device_id and password = its token, and may publish only to
its own topics (its role ``fleet-device:<device_id>`` allows ``publishClientSend`` on each bridge
topic pattern with the ``+`` replaced by its id; the plugin's default denies everything else).

The registry keeps only the SHA-256 of a token, and Mosquitto 2.0's dynamic security can only
take a *plain* password (it stores its own salted PBKDF2-SHA512), so the password is set at the
only moments the plain token exists: when the registry creates a device or rotates its token
(:meth:`BrokerCredentials.set_token`, called by :class:`connectors.registry.DeviceRegistry`). The
client's ``textdescription`` holds the token's SHA-256, so anybody following the registry can
tell which token the broker knows. Everything else follows ``fleet.devices.v1``
(:mod:`connectors.mqtt.credential_sync`): enable, disable and delete. See decision 11.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence

from connectors.mqtt.dynsec import Command, DynsecClient, check
from schemas.devices import Device
from schemas.settings import MqttSettings

log = logging.getLogger(__name__)

ROLE_PREFIX = "fleet-device:"
TOLERATED = ("Role already exists", "ACL with this topic already exists", "Client already exists")


def role_for(device_id: str) -> str:
    return f"{ROLE_PREFIX}{device_id}"


def device_topics(device_id: str, patterns: Sequence[str]) -> list[str]:
    """The topics ``device_id`` may publish to: each pattern with its ``+`` replaced."""
    return [pattern.replace("+", device_id, 1) for pattern in patterns]


def enable_command(device_id: str, enabled: bool) -> Command:
    return {"command": "enableClient" if enabled else "disableClient", "username": device_id}


def token_commands(device: Device, token: str, patterns: Sequence[str]) -> list[Command]:
    """Role, ACLs and client of ``device`` with password ``token``; idempotent in one message."""
    role = role_for(device.device_id)
    acls: list[Command] = [
        {
            "command": "addRoleACL",
            "rolename": role,
            "acltype": "publishClientSend",
            "topic": topic,
            "allow": True,
        }
        for topic in device_topics(device.device_id, patterns)
    ]
    client = {
        "username": device.device_id,
        "password": token,
        "textdescription": device.token_hash,
        "roles": [{"rolename": role}],
    }
    return [
        {"command": "createRole", "rolename": role},
        *acls,
        {"command": "createClient", **client},
        # The client may exist already (a rotation, or a re-created device): set it all again.
        {"command": "modifyClient", **client},
        enable_command(device.device_id, device.is_enabled),
    ]


def admin_client(settings: MqttSettings, timeout_s: float = 5.0) -> DynsecClient:
    return DynsecClient(
        settings.host,
        settings.port,
        settings.admin_username,
        settings.admin_password.get_secret_value(),
        timeout_s=timeout_s,
    )


class BrokerCredentials:
    """Sets a device's broker password; the registry's ``credentials`` hook."""

    def __init__(self, settings: MqttSettings) -> None:
        self._settings = settings

    async def set_token(self, device: Device, token: str) -> None:
        """Raises ``BrokerUnavailable`` or ``DynsecRefused`` when the broker did not take it."""
        await asyncio.to_thread(self._set_token, device, token)

    def _set_token(self, device: Device, token: str) -> None:
        if allows_anonymous(self._settings.host, self._settings.port):
            log.warning(
                "MQTT broker %s:%d lets anonymous clients in: no device passwords to set there "
                "(restart it with the stack's configuration: `fleetstream stack down mosquitto "
                "&& fleetstream stack up mosquitto`)",
                self._settings.host,
                self._settings.port,
            )
            return
        commands = token_commands(device, token, self._settings.topic_patterns)
        with admin_client(self._settings) as dynsec:
            check(dynsec.execute(commands), TOLERATED)


# MQTT 3.1.1 CONNECT without credentials (clean session, keep-alive 10 s, empty client id).
_ANONYMOUS_CONNECT = bytes.fromhex("100c00044d5154540402000a0000")
_CONNACK_ACCEPTED = bytes.fromhex("20020000")


def allows_anonymous(host: str, port: int, timeout_s: float = 2.0) -> bool:
    """True when the broker accepts a client without credentials: it manages no passwords, so
    there are none to set (our own broker configuration never allows that)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(_ANONYMOUS_CONNECT + b"\xe0\x00")
            answer = b""
            while len(answer) < len(_CONNACK_ACCEPTED):
                chunk = sock.recv(len(_CONNACK_ACCEPTED) - len(answer))
                if not chunk:
                    break
                answer += chunk
    except OSError:
        return False
    return answer == _CONNACK_ACCEPTED


BRIDGE_ROLE = "fleet-bridge"


def bridge_commands(settings: MqttSettings) -> list[Command]:
    """The bridge's role (subscribe to the device topics, shared or not) and its client."""
    acls: list[Command] = []
    for pattern in settings.topic_patterns:
        for acltype, topic in (
            ("subscribePattern", f"$share/{settings.share_group}/{pattern}"),
            ("subscribePattern", pattern),
            ("publishClientReceive", pattern),
        ):
            acls.append(
                {
                    "command": "addRoleACL",
                    "rolename": BRIDGE_ROLE,
                    "acltype": acltype,
                    "topic": topic,
                    "allow": True,
                }
            )
    client = {
        "username": settings.bridge_username,
        "password": settings.bridge_password.get_secret_value(),
        "roles": [{"rolename": BRIDGE_ROLE}],
    }
    return [
        {"command": "createRole", "rolename": BRIDGE_ROLE},
        *acls,
        {"command": "createClient", **client},
        {"command": "modifyClient", **client},
        enable_command(settings.bridge_username, True),
    ]


def ensure_bridge_user(settings: MqttSettings) -> None:
    """Create or update the bridge's user and role (idempotent); raises ``BrokerUnavailable``
    when the admin cannot log in and ``DynsecRefused`` when the plugin refuses."""
    with admin_client(settings) as dynsec:
        check(dynsec.execute(bridge_commands(settings)), TOLERATED)


def device_credentials(settings: MqttSettings) -> BrokerCredentials | None:
    """The registry's credentials hook, or None with ``FLEET_MQTT__MANAGE_DEVICE_CREDENTIALS``
    off (a deployment without MQTT: creating or rotating a device never calls the broker)."""
    return BrokerCredentials(settings) if settings.manage_device_credentials else None
