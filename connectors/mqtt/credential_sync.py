"""The broker follows the device registry: enable, disable and delete device users.

A daemon thread reads the compacted ``fleet.devices.v1`` from the beginning (assigned
partitions, no consumer group, like the API's device cache) and keeps the dynamic-security users
in step with it. Passwords are not its business: only the registry has the plain token, at
create and rotate time (:mod:`connectors.mqtt.credentials`); this thread only says who may log
in now.

* a device document → ``enableClient`` or ``disableClient`` (the plugin also disconnects a
  disabled device that is connected); a device the broker has no user for yet is skipped;
* a tombstone → the user and its role are deleted, unless the user already holds another token
  than the deleted device had (the id was registered again meanwhile);
* once caught up with the topic: every device's state is applied again, and users with a device
  role whose device the registry does not know are disabled (a tombstone compacted away while
  no bridge ran).

Every command is idempotent, so several bridges may each run one. When the broker is away, the
changes wait and are applied once it answers again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from connectors.kafka.compacted import CompactedReader
from connectors.kafka.device_cache import DeviceIndex
from connectors.mqtt.credentials import ROLE_PREFIX, admin_client, enable_command, role_for
from connectors.mqtt.dynsec import Command, DynsecClient, check
from schemas.devices import Device
from schemas.errors import FleetError
from schemas.settings import Settings

log = logging.getLogger(__name__)

NOT_FOUND = ("Client not found", "Role not found")
COMMANDS_PER_MESSAGE = 200
_RETRY_MAX_S = 5.0


class _RecordingIndex(DeviceIndex):
    """A device index that also remembers which devices changed, with their previous state."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: dict[str, Device | None] = {}
        """device_id → its document *before* the first unapplied change."""

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        device_id = None if key is None else key.decode(errors="replace")
        if device_id is not None and device_id not in self.changes:
            self.changes[device_id] = self.get(device_id)
        super().apply(key, value)


class CredentialSync:
    """``start()`` once, ``stop()`` once; ``synced`` is set after the first full pass."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._index = _RecordingIndex()
        self._stopping = threading.Event()
        self.synced = threading.Event()
        self._thread: threading.Thread | None = None
        self._dynsec: DynsecClient | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="credential-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        self._close()

    def _run(self) -> None:
        settings = self._settings
        reader = CompactedReader(
            settings.kafka.bootstrap_servers, settings.topics.devices, self._index
        )
        try:
            if reader.assign_retrying(self._stopping, "credential sync"):
                self._follow(reader)
        finally:
            reader.close()

    def _follow(self, reader: CompactedReader) -> None:
        delay = 0.2
        while not self._stopping.is_set():
            reader.poll(0.1)
            if not reader.caught_up:
                continue
            try:
                if not self.synced.is_set():
                    self._full_pass()
                    self._index.changes.clear()
                    self.synced.set()
                    log.info("broker users in step with %s", self._settings.topics.devices)
                elif self._index.changes:
                    changes = dict(self._index.changes)
                    self._apply(changes)
                    for device_id in changes:
                        self._index.changes.pop(device_id, None)
                delay = 0.2
            except FleetError as exc:
                log.warning("credential sync: the broker did not take changes (%s)", exc)
                self._close()
                self._stopping.wait(delay)
                delay = min(delay * 2, _RETRY_MAX_S)

    def _client(self) -> DynsecClient:
        if self._dynsec is None:
            client = admin_client(self._settings.mqtt)
            client.connect()
            self._dynsec = client
        return self._dynsec

    def _close(self) -> None:
        if self._dynsec is not None:
            self._dynsec.close()
            self._dynsec = None

    def _execute(self, commands: list[Command]) -> None:
        for start in range(0, len(commands), COMMANDS_PER_MESSAGE):
            batch = commands[start : start + COMMANDS_PER_MESSAGE]
            check(self._client().execute(batch), NOT_FOUND)

    def _full_pass(self) -> None:
        devices = self._index.documents()
        commands = [enable_command(d.device_id, d.is_enabled) for d in devices.values()]
        answers = self._client().execute([{"command": "listClients", "verbose": True}])
        check(answers)
        for client in answers[0].data.get("clients", []):
            username = client.get("username")
            roles = [role.get("rolename", "") for role in client.get("roles", [])]
            if username not in devices and any(r.startswith(ROLE_PREFIX) for r in roles):
                commands.append(enable_command(username, False))
        self._execute(commands)

    def _apply(self, changes: dict[str, Device | None]) -> None:
        commands: list[Command] = []
        for device_id, previous in changes.items():
            current = self._index.get(device_id)
            if current is not None:
                commands.append(enable_command(device_id, current.is_enabled))
            elif previous is not None and self._holds_token(device_id, previous.token_hash):
                commands += _delete_commands([device_id])
        self._execute(commands)

    def _holds_token(self, device_id: str, token_hash: str) -> bool:
        answers = self._client().execute([{"command": "getClient", "username": device_id}])
        check(answers, NOT_FOUND)
        client = answers[0].data.get("client", {})
        return bool(client) and client.get("textdescription") == token_hash


def _delete_commands(device_ids: Iterable[str]) -> list[Command]:
    commands: list[Command] = []
    for device_id in device_ids:
        commands.append({"command": "deleteClient", "username": device_id})
        commands.append({"command": "deleteRole", "rolename": role_for(device_id)})
    return commands
