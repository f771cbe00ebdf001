"""What every service of the local stack provides to the manager."""

from __future__ import annotations

import signal
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from cli.stack.installer import Requirement
from cli.stack.paths import StackPaths
from cli.stack.probes import LOCALHOST
from cli.stack.process import ProcessSignature, RunAs
from schemas.settings import Settings

Progress = Callable[[str], None]


@dataclass(frozen=True)
class LaunchSpec:
    """How to start the long-running server process of a service."""

    argv: tuple[str, ...]
    cwd: Path
    run_as: RunAs | None = None
    env: dict[str, str] = field(default_factory=dict)


class Service(ABC):
    """One server of the stack: its files, how to start it, how to tell that it works.

    The manager calls, in order: :meth:`requirements` (installed if missing), :meth:`prepare`
    (only when it is not running), starts the returned :class:`LaunchSpec` detached, polls
    :meth:`healthy` until it is true, then :meth:`after_healthy`.
    """

    #: Its name in ``stack`` commands, pid and log files (a class attribute, or set per node).
    name: str
    #: Signal for a clean shutdown; SIGKILL follows after ``stop_grace_s``.
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    stop_grace_s: ClassVar[float] = 10.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = StackPaths(settings.stack.home)

    @property
    def dir(self) -> Path:
        return self.paths.service_dir(self.name)

    @property
    def pid_file(self) -> Path:
        return self.paths.pid_file(self.name)

    @property
    def log_file(self) -> Path:
        return self.paths.log_file(self.name)

    @property
    @abstractmethod
    def ports(self) -> tuple[int, ...]:
        """Every TCP port it listens on (on 127.0.0.1); the first is the one clients use."""

    @property
    def address(self) -> str:
        return f"{LOCALHOST}:{self.ports[0]}"

    @property
    @abstractmethod
    def signature(self) -> ProcessSignature:
        """How its process's command line looks (to recognise our pid, never another one)."""

    @abstractmethod
    def requirements(self) -> tuple[Requirement, ...]:
        """Programs it needs on the machine."""

    @abstractmethod
    def prepare(self, progress: Progress) -> LaunchSpec:
        """Create folders, configuration and initial data (idempotent); return how to start."""

    @abstractmethod
    def healthy(self) -> bool:
        """True when it answers clients; quick (a few seconds at most) and never raises."""

    def after_healthy(self, progress: Progress) -> None:  # noqa: B027 -- optional hook
        """Idempotent set-up that needs the running server (default: nothing)."""
