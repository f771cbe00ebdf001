"""``Simulation(settings, plan).run()``: register a simulated fleet, drive it, check Postgres.

The stages, in order: register the devices in bulk (tokens kept under the state directory),
wait until the API knows them, connect the MQTT devices, send every device's schedule, drain
what is in flight, then look for every acked reading in Postgres. The targets are the settings'
API and MQTT front; only loopback addresses unless ``allow_remote``. Tests and benchmarks use
this class; ``fleetstream simulate`` is a thin command over it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from cli.simulator import registration
from cli.simulator.devices import Fleetwork, connect, http_device, mqtt_device
from cli.simulator.http_client import HttpPool
from cli.simulator.http_sender import HttpSender
from cli.simulator.mqtt_client import SUCCESS, Endpoint, MqttClient
from cli.simulator.payloads import device_token, wrong_token
from cli.simulator.plan import Plan
from cli.simulator.schedule import DeviceProfile, Misbehaviour, Transport, profiles
from cli.simulator.storage import check_storage
from cli.simulator.tally import Fleet, StorageCheck, Summary, Tally, summarize
from schemas.settings import Settings

DRAIN_GRACE_S = 30.0
"""How long after the schedule's end in-flight sends may take before they are cancelled."""
_ANY = {"0.0.0.0", "::", ""}  # noqa: S104 - a bind-all address means this machine as a target


class TargetError(ValueError):
    """A target outside loopback without ``allow_remote``."""


def target_host(host: str, *, allow_remote: bool) -> str:
    """Where to connect for a service bound to ``host`` (a bind-all address means loopback)."""
    if host in _ANY:
        return "127.0.0.1"
    if allow_remote or host == "localhost" or _is_loopback(host):
        return host
    raise TargetError(f"{host} is not a loopback address (allow_remote would permit it)")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Simulation:
    """One bounded run; :meth:`run` (or ``await`` :meth:`arun`) returns its :class:`Summary`.

    ``stage`` and ``tally`` may be read while it runs (the progress line does)."""

    def __init__(
        self,
        settings: Settings,
        plan: Plan,
        *,
        allow_remote: bool = False,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings, self.plan, self.clock = settings, plan, clock
        self.api_host = target_host(settings.api.host, allow_remote=allow_remote)
        self.mqtt_host = target_host(settings.mqtt_front.host, allow_remote=allow_remote)
        self.run_id = plan.run_id or uuid.uuid4().hex[:12]
        self.tally = Tally()
        self.stage = "registering"
        self.fleet = profiles(plan)

    def run(self) -> Summary:
        return asyncio.run(self.arun())

    @property
    def state_dir(self) -> Path:
        return self.plan.state_dir or self.settings.stack.home / "simulate"

    async def arun(self) -> Summary:
        base_url = f"http://{self.api_host}:{self.settings.api.port}"
        setup_started = time.monotonic()
        async with httpx.AsyncClient(base_url=base_url, timeout=60.0) as admin:
            tokens = await self._register(admin)
        self.stage = "connecting"
        pool = HttpPool(
            self.api_host,
            self.settings.api.port,
            size=self.plan.http_concurrency,
            timeout_s=self.plan.request_timeout_s,
        )
        try:
            work = self._work(pool)
            clients = await self._connect_mqtt(work, tokens)
            self.stage = "sending"
            started = time.monotonic()
            setup_s = started - setup_started
            await self._send(work, tokens, clients)
            elapsed = time.monotonic() - started
        finally:
            await pool.close()
        check = await self._check() if self.plan.check else None
        self.stage = "done"
        return summarize(self._fleet_counts(), self.tally, elapsed, check, setup_s)

    async def _register(self, client: httpx.AsyncClient) -> dict[str, str]:
        ids = [profile.device_id for profile in self.fleet]
        path = registration.state_file(self.state_dir, self.plan.seed, self.plan.prefix)
        if not self.plan.register:
            known = registration.load_tokens(path)
            return {i: known.get(i) or device_token(self.plan.seed, i) for i in ids}
        admin = self.settings.auth.admin_token.get_secret_value()
        tokens = await registration.register(client, admin, self.plan.seed, ids)
        registration.save_tokens(path, tokens)
        self.stage = "registry"
        await self._wait_for_api(client, ids[-1], tokens[ids[-1]])
        return tokens

    async def _wait_for_api(self, client: httpx.AsyncClient, device_id: str, token: str) -> None:
        """Until the API knows the last registered device (it reads the registry in order)."""
        deadline = time.monotonic() + self.plan.registry_wait_s
        while time.monotonic() < deadline:
            try:
                answer = await client.get(
                    f"/api/v1/sensors/{device_id}/latest", headers={"X-API-Key": token}
                )
                if answer.status_code not in (401, 403, 503):
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)

    def _work(self, pool: HttpPool) -> Fleetwork:
        pattern = self.settings.mqtt.topic_patterns[0]
        return Fleetwork(
            plan=self.plan,
            run_id=self.run_id,
            tally=self.tally,
            http=HttpSender(pool, self.tally, retries=self.plan.retries),
            topic=lambda device_id: pattern.replace("+", device_id),
            connects=asyncio.Semaphore(self.plan.mqtt_connects_at_once),
            start_wall=self.clock(),
        )

    def _token(self, profile: DeviceProfile, tokens: dict[str, str]) -> str:
        if profile.misbehaviour is Misbehaviour.WRONG_TOKEN:
            return wrong_token(self.plan.seed, profile.device_id)
        return tokens[profile.device_id]

    async def _connect_mqtt(self, work: Fleetwork, tokens: dict[str, str]) -> dict[str, MqttClient]:
        """Every MQTT device connected (one that is refused tries again as it sends)."""
        front = self.settings.mqtt_front
        endpoint = Endpoint(self.mqtt_host, front.port, receive_maximum=front.receive_maximum)
        clients = {
            p.device_id: MqttClient(endpoint, p.device_id, self._token(p, tokens))
            for p in self.fleet
            if p.transport is Transport.MQTT
        }

        async def first(profile: DeviceProfile) -> None:
            patience = 0.0 if profile.misbehaviour else self.plan.registry_wait_s
            await connect(work, clients[profile.device_id], patience)

        mqtt = [p for p in self.fleet if p.transport is Transport.MQTT]
        await asyncio.gather(*(first(profile) for profile in mqtt))
        return clients

    async def _send(
        self, work: Fleetwork, tokens: dict[str, str], clients: dict[str, MqttClient]
    ) -> None:
        work.start_wall, work.start_mono = self.clock(), time.monotonic()
        tasks = [
            asyncio.create_task(
                mqtt_device(work, p, clients[p.device_id])
                if p.transport is Transport.MQTT
                else http_device(work, p, self._token(p, tokens))
            )
            for p in self.fleet
        ]
        bound = self._time_bound()
        _, late = await asyncio.wait(tasks, timeout=bound)
        for task in late:  # past the bound: what is still in flight is left unanswered
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
        for task in tasks:
            if not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        await asyncio.gather(*(c.disconnect() for c in clients.values() if c.session_open))

    def _time_bound(self) -> float | None:
        """Seconds the sending stage may take (None: bounded by the readings count only)."""
        if self.plan.duration_s is None:
            return None
        per_send = self.plan.request_timeout_s * (self.plan.retries + 1)
        return self.plan.duration_s + self.plan.offline_s + per_send + DRAIN_GRACE_S

    async def _check(self) -> StorageCheck:
        self.stage = "checking"
        return await check_storage(
            self.settings.postgres,
            self.tally.acked_readings,
            timeout_s=self.plan.check_timeout_s,
        )

    def _fleet_counts(self) -> Fleet:
        mqtt = sum(p.transport is Transport.MQTT for p in self.fleet)
        return Fleet(self.run_id, self.plan.seed, len(self.fleet) - mqtt, mqtt)


__all__ = ["SUCCESS", "Plan", "Simulation", "Summary", "TargetError", "target_host"]
