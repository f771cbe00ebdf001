"""Redis: one server with an append-only file under ``<home>/redis``; in secure mode its port
serves TLS only (``cli/stack/service_tls.py``)."""

from __future__ import annotations

from pathlib import Path

from cli.stack import installer, probes, service_tls
from cli.stack.certs import Pki
from cli.stack.installer import Requirement
from cli.stack.process import ProcessSignature
from cli.stack.service import LaunchSpec, Progress, Service

REDIS_SERVER = Path("/usr/bin/redis-server")


class Redis(Service):
    """Healthy: a PING over TCP on 127.0.0.1 is answered with +PONG (not -LOADING)."""

    name = "redis"
    stop_grace_s = 15.0  # SIGTERM makes it write its data and exit

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.settings.redis.port,)

    @property
    def signature(self) -> ProcessSignature:
        # set-proc-title is off, so /proc/<pid>/cmdline keeps our arguments.
        return ProcessSignature("redis-server", ("--dir", str(self.dir)))

    def requirements(self) -> tuple[Requirement, ...]:
        return (installer.executable(REDIS_SERVER, "redis-server"),)

    def prepare(self, progress: Progress) -> LaunchSpec:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = (
            str(REDIS_SERVER),
            "--bind", "127.0.0.1",
            *self._port_arguments(),
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--pidfile", str(self.dir / "redis-server.pid"),
            "--set-proc-title", "no",
        )  # fmt: skip
        return LaunchSpec(argv=argv, cwd=self.dir)

    def _port_arguments(self) -> tuple[str, ...]:
        if self.settings.stack.secure:
            return service_tls.redis_arguments(self._pki, self.settings.redis.port)
        return ("--port", str(self.settings.redis.port))

    @property
    def _pki(self) -> Pki:
        return Pki.of_home(self.settings.stack.home)

    def healthy(self) -> bool:
        port = self.settings.redis.port
        if self.settings.stack.secure:
            return probes.redis_ping(port, tls_cafile=self._pki.ca_cert)
        return probes.redis_ping(port)
