"""`fleetstream run` restarts its own children with backoff and leaves the others running."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from typing import cast

from cli.supervisor import BACKOFF_MAX_S, STABLE_S, Supervisor


class FakeProcess:
    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        return self.returncode

    def terminate(self) -> None:
        self.returncode = 0

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode or 0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def supervisor(clock: Clock, said: list[str]) -> tuple[Supervisor, list[FakeProcess]]:
    started: list[FakeProcess] = []

    def spawn(argv: Sequence[str]) -> subprocess.Popen[bytes]:
        started.append(FakeProcess(argv))
        return cast("subprocess.Popen[bytes]", started[-1])

    commands = {"api": ["api"], "worker": ["worker"], "mqtt": ["mqtt"]}
    return Supervisor(commands, spawn=spawn, say=said.append, clock=clock), started


def test_an_exited_child_is_restarted_after_its_backoff_and_the_others_keep_running() -> None:
    clock, said = Clock(), list[str]()
    sup, started = supervisor(clock, said)
    sup.start()
    api, worker, mqtt = started
    clock.now = 5.0
    worker.returncode = 70
    sup.step()
    assert said == ["worker exited (70) after 5 s; restarting in 1 s"]
    assert len(started) == 3 and api.poll() is None and mqtt.poll() is None
    clock.now = 5.9
    sup.step()
    assert len(started) == 3  # still waiting out the backoff
    clock.now = 6.0
    sup.step()
    assert [p.argv for p in started[3:]] == [["worker"]]


def test_quick_exits_double_the_backoff_up_to_its_cap_and_a_stable_run_resets_it() -> None:
    clock, said = Clock(), list[str]()
    sup, started = supervisor(clock, said)
    sup.start()
    delays = []
    for _ in range(8):
        worker = next(p for p in reversed(started) if p.argv == ["worker"])
        worker.returncode = 1
        sup.step()
        child = next(c for c in sup.children if c.name == "worker")
        delays.append(child.due_at - clock.now)
        clock.now = child.due_at
        sup.step()
    assert delays[:6] == [1, 2, 4, 8, 16, 30] and max(delays) == BACKOFF_MAX_S
    worker = next(p for p in reversed(started) if p.argv == ["worker"])
    clock.now += STABLE_S
    worker.returncode = 1
    sup.step()
    child = next(c for c in sup.children if c.name == "worker")
    assert child.due_at - clock.now == 1


def test_stop_terminates_every_running_child_and_reports_their_status() -> None:
    clock, said = Clock(), list[str]()
    sup, started = supervisor(clock, said)
    sup.start()
    assert sup.stop(grace_s=1) == {"api": 0, "worker": 0, "mqtt": 0}
    assert all(p.returncode == 0 for p in started)
