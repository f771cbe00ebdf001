"""Worker processes started by tests, stopped by their own pid only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Self

from schemas.settings import Settings
from tests.support import settings_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ServiceProcess:
    """A ``fleetstream <command>`` child process with the given settings."""

    command = "worker"

    def __init__(self, settings: Settings, log_path: Path) -> None:
        self._env = {**os.environ, **settings_env(settings)}
        self._log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # noqa: S603 - our own CLI, fixed arguments
                [sys.executable, "-m", "cli.main", self.command],
                cwd=PROJECT_ROOT,
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commit — a crash."""
        if self._proc is not None and self.running:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()

    def stop(self, grace_s: float = 20.0) -> None:
        if self._proc is None or not self.running:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_tail(self, lines: int = 40) -> str:
        if not self._log_path.exists():
            return ""
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])


class WorkerProcess(ServiceProcess):
    command = "worker"


class ApiProcess(ServiceProcess):
    command = "api"


class FrontProcess(ServiceProcess):
    command = "mqtt-front"


def run_cli(settings: Settings, *args: str, timeout_s: float = 120.0) -> str:
    """``fleetstream ARGS`` with ``settings``; its standard output (it must exit 0)."""
    result = subprocess.run(  # noqa: S603 - our own CLI, fixed arguments
        [sys.executable, "-m", "cli.main", *args],
        cwd=PROJECT_ROOT,
        env={**settings_env(settings), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout
