"""Keep ``fleetstream run``'s own children running: API, worker and MQTT bridge.

Only the processes started here are watched, each by its own ``Popen`` (never ``os.wait()``,
which also reaps the local stack's services when ``run`` started them, so a Postgres outage
ended the whole run). A child that exits is started again after a backoff that doubles with
each quick exit (``BACKOFF_START_S`` up to ``BACKOFF_MAX_S``) and starts over once it ran
``STABLE_S``; meanwhile the others go on, so the API keeps accepting while the worker restarts.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

BACKOFF_START_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_S = 60.0
"""A child that ran this long before exiting is restarted after the shortest backoff."""

Spawn = Callable[[Sequence[str]], "subprocess.Popen[bytes]"]
Say = Callable[[str], None]


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_exits: int = 0
    """Exits in a row, each before the child ran ``STABLE_S``."""
    due_at: float = 0.0
    """When a stopped child is started again."""
    restarts: int = 0


class Supervisor:
    def __init__(
        self,
        commands: Mapping[str, Sequence[str]],
        *,
        spawn: Spawn,
        say: Say,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.children = [Child(name, list(argv)) for name, argv in commands.items()]
        self._spawn = spawn
        self._say = say
        self._clock = clock

    def start(self) -> None:
        for child in self.children:
            self._start(child)

    def step(self) -> None:
        """Notice the children that exited and start the ones whose backoff is over."""
        now = self._clock()
        for child in self.children:
            if child.process is not None and child.process.poll() is not None:
                self._exited(child, child.process.returncode, now)
            elif child.process is None and now >= child.due_at:
                child.restarts += 1
                self._start(child)

    def stop(self, grace_s: float) -> dict[str, int]:
        """SIGTERM every running child, SIGKILL what is left after ``grace_s``; the exit
        status of each child that ran."""
        running = [c.process for c in self.children if c.process is not None]
        for process in running:
            if process.poll() is None:
                process.terminate()
        deadline = self._clock() + grace_s
        for process in running:
            try:
                process.wait(timeout=max(0.1, deadline - self._clock()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        return {c.name: c.process.returncode for c in self.children if c.process is not None}

    def _start(self, child: Child) -> None:
        child.process = self._spawn(child.argv)
        child.started_at = self._clock()

    def _exited(self, child: Child, code: int, now: float) -> None:
        ran = now - child.started_at
        child.quick_exits = 0 if ran >= STABLE_S else child.quick_exits + 1
        delay = min(BACKOFF_START_S * 2 ** max(child.quick_exits - 1, 0), BACKOFF_MAX_S)
        child.process, child.due_at = None, now + delay
        self._say(f"{child.name} exited ({code}) after {ran:.0f} s; restarting in {delay:.0f} s")
