"""Redis: one server with an append-only file under ``<home>/redis``."""

from __future__ import annotations

from pathlib import Path

from cli.stack import installer, probes
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
            "--port", str(self.settings.redis.port),
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--pidfile", str(self.dir / "redis-server.pid"),
            "--set-proc-title", "no",
        )  # fmt: skip
        return LaunchSpec(argv=argv, cwd=self.dir)

    def healthy(self) -> bool:
        return probes.redis_ping(self.settings.redis.port)
