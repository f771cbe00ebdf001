"""The local stack of real services: up, down, status, logs.

Services: kafka (one broker, or ``kafka-1``..``kafka-3``), postgres, redis, mosquitto,
apicurio (the schema registry), s3proxy (the S3-compatible blob store). Every one listens on
127.0.0.1 only, at the port from the settings, and keeps its data under
``settings.stack.home``. Processes run detached (they outlive the caller); their pids are
recorded in ``<home>/run/<service>.pid`` and their output goes to
``<home>/logs/<service>.log``. Only those recorded pids are ever stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cli.stack import installer, probes, process
from cli.stack.apicurio import Apicurio
from cli.stack.certs import Pki
from cli.stack.errors import StackError
from cli.stack.kafka import kafka_services
from cli.stack.mosquitto import Mosquitto
from cli.stack.paths import StackPaths
from cli.stack.postgres import Postgres
from cli.stack.redis import Redis
from cli.stack.s3proxy import S3Proxy
from cli.stack.service import Progress, Service
from schemas.settings import Settings

__all__ = [
    "SERVICE_NAMES",
    "ServiceStatus",
    "StackError",
    "down",
    "log_path",
    "select",
    "status",
    "tail",
    "up",
]

_SERVICES: Final[dict[str, Callable[[Settings], Sequence[Service]]]] = {
    "kafka": kafka_services,  # one service per broker
    "postgres": lambda settings: [Postgres(settings)],
    "redis": lambda settings: [Redis(settings)],
    "mosquitto": lambda settings: [Mosquitto(settings)],
    "apicurio": lambda settings: [Apicurio(settings)],
    "s3proxy": lambda settings: [S3Proxy(settings)],
}
#: Every service, in start order (Kafka first: it takes longest to boot).
SERVICE_NAMES: Final[tuple[str, ...]] = tuple(_SERVICES)
LOG_TAIL_LINES: Final = 30


@dataclass(frozen=True)
class ServiceStatus:
    """One service: its live pid (None when not running), address and health right now."""

    name: str
    pid: int | None
    address: str
    healthy: bool

    @property
    def running(self) -> bool:
        return self.pid is not None


@dataclass
class _Starting:
    service: Service
    pid: int
    deadline: float


def select(services: Iterable[str] | None) -> list[str]:
    """The requested names in start order; None means all. Unknown names raise StackError."""
    if services is None:
        return list(SERVICE_NAMES)
    wanted = set(services)
    unknown = sorted(wanted - set(SERVICE_NAMES))
    if unknown:
        raise StackError(
            f"unknown service(s) {', '.join(unknown)}; known: {', '.join(SERVICE_NAMES)}"
        )
    return [name for name in SERVICE_NAMES if name in wanted]


def _build(settings: Settings, services: Iterable[str] | None) -> list[Service]:
    return [svc for name in select(services) for svc in _SERVICES[name](settings)]


def up(
    settings: Settings, services: Sequence[str] | None = None, progress: Progress = print
) -> None:
    """Start every selected service that is not running and wait until all of them are healthy.

    Idempotent: running services are left alone (only waited for). Stale pid files (process
    dead, or the pid now belongs to another program) are removed first. Missing programs are
    installed with apt-get when we are root on Debian. Each service gets
    ``settings.stack.startup_timeout_s`` from its start to become healthy; otherwise, or if it
    exits, StackError carries the last lines of its log. Services already started stay up.
    """
    chosen = _build(settings, services)
    paths = StackPaths(settings.stack.home)
    paths.ensure()
    if settings.stack.secure:
        Pki.of_home(settings.stack.home).ensure(progress)
    needs = [req for svc in chosen for req in svc.requirements()]
    installer.ensure(needs, paths.logs_dir / "apt.log", progress)
    starting = [_start(svc, settings.stack.startup_timeout_s, progress) for svc in chosen]
    for item in starting:
        _wait_healthy(item, settings.stack.startup_timeout_s, progress)
        item.service.after_healthy(progress)
        progress(f"{item.service.name}: healthy at {item.service.address} (pid {item.pid})")


def _start(svc: Service, timeout_s: float, progress: Progress) -> _Starting:
    if process.clear_stale_pid(svc.pid_file, svc.signature):
        progress(f"{svc.name}: removed stale pid file {svc.pid_file}")
    pid = process.live_pid(svc.pid_file, svc.signature)
    if pid is not None:
        progress(f"{svc.name}: already running (pid {pid})")
        return _Starting(svc, pid, time.monotonic() + timeout_s)
    _check_ports_free(svc)
    spec = svc.prepare(progress)
    process.rotate_log(svc.log_file)
    child = process.start_detached(
        spec.argv, svc.log_file, cwd=spec.cwd, run_as=spec.run_as, env=spec.env or None
    )
    process.write_pid_file(svc.pid_file, child.pid)
    progress(f"{svc.name}: started (pid {child.pid}), log {svc.log_file}")
    return _Starting(svc, child.pid, time.monotonic() + timeout_s)


def _check_ports_free(svc: Service) -> None:
    for port in svc.ports:
        if probes.tcp_open(port):
            raise StackError(
                f"{svc.name}: 127.0.0.1:{port} is already in use by a process this stack did "
                f"not start (no live pid in {svc.pid_file}); stop it or change the port in the "
                "settings (FLEET_... environment variables)"
            )


def _wait_healthy(item: _Starting, timeout_s: float, progress: Progress) -> None:
    svc = item.service
    announced = False
    while not svc.healthy():
        if not process.is_alive(item.pid):
            code = process.exit_code(item.pid)
            status = "" if code is None else f" with status {code}"
            raise _failure(svc, f"exited{status} (pid {item.pid}) before it became healthy")
        if time.monotonic() >= item.deadline:
            raise _failure(svc, f"not healthy after {timeout_s:.0f} s (pid {item.pid} still runs)")
        if not announced:
            progress(f"{svc.name}: waiting for {svc.address}…")
            announced = True
        time.sleep(0.25)


def _failure(svc: Service, reason: str) -> StackError:
    lines = process.tail_lines(svc.log_file, LOG_TAIL_LINES)
    log = "\n".join(f"  | {line}" for line in lines) or "  | (empty)"
    return StackError(
        f"{svc.name}: {reason}; address {svc.address}.\nLast lines of {svc.log_file}:\n{log}"
    )


def down(
    settings: Settings, services: Sequence[str] | None = None, progress: Progress = print
) -> None:
    """Stop the selected services that this stack started, in reverse start order.

    Only the pid in ``<home>/run/<service>.pid`` is signalled, and only while it is alive and its
    command line is the one we started (so a reused pid is never hit): the service's clean
    shutdown signal first (SIGTERM; SIGINT for Postgres), SIGKILL after its grace period; the
    brokers of a cluster at the same time. Data is kept. Raises StackError if a process is
    still there after SIGKILL.
    """
    for group in reversed(select(services)):
        members = _SERVICES[group](settings)
        # A cluster's brokers stop together: the last one alone would wait for a quorum of
        # controllers that is gone before its controlled shutdown could finish.
        with ThreadPoolExecutor(max_workers=len(members)) as pool:
            list(pool.map(lambda svc: _stop(svc, progress), members))


def _stop(svc: Service, progress: Progress) -> None:
    pid = process.live_pid(svc.pid_file, svc.signature)
    if pid is None:
        if process.clear_stale_pid(svc.pid_file, svc.signature):
            progress(f"{svc.name}: removed stale pid file {svc.pid_file}")
        progress(f"{svc.name}: not running")
        return
    progress(f"{svc.name}: stopping pid {pid}…")
    outcome = process.stop(pid, svc.signature, sig=svc.stop_signal, grace_s=svc.stop_grace_s)
    if outcome == "still running":
        raise StackError(f"{svc.name}: pid {pid} did not exit even after SIGKILL")
    svc.pid_file.unlink(missing_ok=True)
    if outcome == "killed":
        progress(f"{svc.name}: killed (no clean exit within {svc.stop_grace_s:.0f} s)")
    else:
        progress(f"{svc.name}: stopped")


def status(settings: Settings, services: Sequence[str] | None = None) -> list[ServiceStatus]:
    """Each selected service: live pid of ours (or None), address, healthy now (bool).

    Read-only: nothing is started, stopped or removed.
    """
    result = []
    for svc in _build(settings, services):
        pid = process.live_pid(svc.pid_file, svc.signature)
        healthy = pid is not None and svc.healthy()
        result.append(ServiceStatus(svc.name, pid, svc.address, healthy))
    return result


def log_path(settings: Settings, service: str) -> Path:
    """The log file of ``service`` (its stdout and stderr of the current run); of a cluster's
    brokers, ``kafka-2`` names one and ``kafka`` the first."""
    group, _, node = service.rpartition("-")
    for svc in _build(settings, [group if node.isdigit() else service]):
        if svc.name in (service, f"{service}-1"):
            return svc.log_file
    raise StackError(f"no service {service} in this stack")


def tail(settings: Settings, service: str, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the log of ``service`` ("" when there is no log yet)."""
    return "\n".join(process.tail_lines(log_path(settings, service), lines))
