"""Processes of a benchmark: the shared local stack (read-only) and the ones a run starts.

The stack (Kafka, Postgres, Redis) is shared with other work: the harness only reads its pids,
never stops it. What a run starts (API, workers, baselines, load generators) it stops by pid.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from schemas.settings import Settings
from tests.support import free_port, isolated, settings_env

STACK_SERVICES = ("kafka", "postgres", "redis")
STOP_TIMEOUT_S = 20.0


class BenchError(RuntimeError):
    """The benchmark cannot run (stack down, tool missing) or a process it started failed."""


def stack_pids(settings: Settings) -> dict[str, int]:
    """Pids of the stack's Kafka broker, postmaster and Redis; BenchError if one is down."""
    from cli.stack import manager

    pids: dict[str, int] = {}
    for status in manager.status(settings, STACK_SERVICES):
        if status.pid is None or not status.healthy:
            raise BenchError(
                f"{status.name} is not running/healthy; start the stack with `fleetstream setup`"
            )
        pids[status.name] = status.pid
    return pids


def bench_settings(base: Settings, workdir: Path, **worker: object) -> Settings:
    """``base`` with fresh uuid topics and group, its own data dir and a free API port.

    The API runs in development with ``FLEET_AUTH__ALLOW_UNAUTHENTICATED_INGEST``: the load
    generators post for thousands of devices without tokens (device auth costs a SHA-256 and a
    dict look-up per request), and anonymous requests have no per-device rate limit."""
    settings = isolated(base, "bench", workdir / "faust", **worker)
    return settings.model_copy(
        update={
            "environment": "development",
            "api": settings.api.model_copy(update={"port": free_port()}),
            "auth": settings.auth.model_copy(update={"allow_unauthenticated_ingest": True}),
        }
    )


@dataclass
class Started:
    """A process the run started, its log, and how it is named in the results."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(
                f"{self.name} (pid {self.pid}) exited with {self.proc.returncode}; "
                f"last lines of {self.log}:\n{self.tail()}"
            )


def start(
    name: str,
    argv: Sequence[str],
    workdir: Path,
    env: Mapping[str, str] | None = None,
) -> Started:
    """Start ``argv`` in its own session with output to ``<workdir>/<name>.log``."""
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(  # noqa: S603 - our own programs
            list(argv),
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Started(name, proc, log)


def stop(started: Sequence[Started]) -> None:
    """SIGTERM each (by pid), then SIGKILL what is still there after the timeout."""
    for item in started:
        if item.proc.poll() is None:
            item.proc.send_signal(signal.SIGTERM)
    for item in started:
        try:
            item.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            item.proc.kill()
            item.proc.wait()


@contextmanager
def services(settings: Settings, workdir: Path, commands: Sequence[str]) -> Iterator[list[Started]]:
    """Run ``fleetstream <command>`` for each of ``commands`` (e.g. api, worker, worker).

    Each gets the settings as FLEET_* variables and, for workers, its own Faust data dir.
    Yields them in order; stops them (by pid) on exit.
    """
    env = settings_env(settings)
    started: list[Started] = []
    try:
        for n, command in enumerate(commands):
            own = {**env, "FLEET_WORKER__DATADIR": str(workdir / f"faust-{n}")}
            started.append(
                start(f"{command}-{n}", [sys.executable, "-m", "cli.main", command], workdir, own)
            )
        yield started
    finally:
        stop(started)
