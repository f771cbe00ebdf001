"""CPU seconds of processes, read from ``/proc/<pid>/stat`` before and after a measured window.

A *tree* is a process and all its live descendants. Its CPU time is, over every process in it,
``utime + stime + cutime + cstime``: a child that exits and is reaped during the window moves its
time into its parent's ``cutime``/``cstime``, so nothing is lost or counted twice (Postgres
forks a backend per connection; the postmaster reaps them). Threads are included, as
``/proc/<pid>/stat`` sums all threads of a process.

A process we start and wait for (wrk, Kafka's Java tools, a baseline) is measured with
:func:`wait_with_cpu`, which reaps it with ``wait4`` and reads its rusage: that is exact even
though the process is gone by the time the window closes.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/<pid>/stat`` we need; times are in clock ticks."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def ticks(self) -> int:
        """Own CPU time plus that of the children it has reaped."""
        return self.utime + self.stime + self.cutime + self.cstime


class ProcessGone(LookupError):
    """The root of a measured tree no longer exists."""


def parse_stat(text: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line.

    The command name (field 2) sits in parentheses and may itself contain spaces and ``)``,
    so the numeric fields are the ones after the *last* ``)``.
    """
    head, _, tail = text.rpartition(")")
    pid = int(head.split("(", 1)[0])
    rest = tail.split()
    # rest[0] is field 3 (state); field n is rest[n - 3].
    return ProcStat(
        pid=pid,
        ppid=int(rest[1]),
        utime=int(rest[11]),
        stime=int(rest[12]),
        cutime=int(rest[13]),
        cstime=int(rest[14]),
    )


def read_all(proc: Path = PROC) -> dict[int, ProcStat]:
    """Every process visible in ``proc`` (processes that vanish while we read are skipped)."""
    stats: dict[int, ProcStat] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats[int(entry.name)] = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError, IndexError):
            continue  # exited meanwhile, or not a process entry
    return stats


def tree_ticks(root: int, stats: Mapping[int, ProcStat]) -> int:
    """CPU ticks of ``root`` and its live descendants (see the module docstring)."""
    if root not in stats:
        raise ProcessGone(f"process {root} is gone")
    children: dict[int, list[int]] = {}
    for stat in stats.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    total, todo, seen = 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += stats[pid].ticks
        todo.extend(children.get(pid, ()))
    return total


def group_ticks(pids: Iterable[int], stats: Mapping[int, ProcStat]) -> int:
    """Sum of :func:`tree_ticks` over ``pids`` (trees must not overlap)."""
    return sum(tree_ticks(pid, stats) for pid in pids)


def machine_busy_ticks(proc: Path = PROC) -> int:
    """CPU ticks the whole machine spent busy (every mode of ``/proc/stat``'s cpu line except
    idle and iowait; guest time is already inside user)."""
    for line in (proc / "stat").read_text().splitlines():
        if line.startswith("cpu "):
            fields = [int(value) for value in line.split()[1:]]
            user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
            return user + nice + system + irq + softirq + steal
    raise ValueError("no cpu line in /proc/stat")


class CpuMeter:
    """CPU seconds used by named groups of process trees between :meth:`start` and :meth:`stop`.

    ``other`` is what the rest of the machine used meanwhile (busy time of every CPU minus the
    groups): on a shared machine it tells how quiet the measurement was.

    >>> meter = CpuMeter({"api": [api_pid], "postgres": [postmaster_pid]})
    >>> meter.start(); ...; seconds = meter.stop()   # {"api": 1.9, "postgres": 0.7, "other": 0.1}
    """

    def __init__(self, groups: Mapping[str, Sequence[int]], proc: Path = PROC) -> None:
        self._groups = {name: list(pids) for name, pids in groups.items()}
        self._proc = proc
        self._before: dict[str, int] | None = None

    def _sample(self) -> dict[str, int]:
        busy = machine_busy_ticks(self._proc)
        stats = read_all(self._proc)
        sample = {name: group_ticks(pids, stats) for name, pids in self._groups.items()}
        return {**sample, "other": busy}

    def start(self) -> None:
        self._before = self._sample()

    def stop(self) -> dict[str, float]:
        """Seconds per group (and ``other``) since :meth:`start`; ProcessGone if a root exited."""
        if self._before is None:
            raise RuntimeError("CpuMeter.stop() before start()")
        after = self._sample()
        used = {name: (after[name] - self._before[name]) / CLOCK_TICKS for name in self._groups}
        machine = (after["other"] - self._before["other"]) / CLOCK_TICKS
        return {**used, "other": max(0.0, machine - sum(used.values()))}


def wait_with_cpu(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[int, float]:
    """Wait for ``proc`` (our child) and return its exit status and CPU seconds.

    Reaps it with ``wait4`` to get its rusage (``Popen.wait`` would discard it); the time
    includes the children it reaped. Raises ``subprocess.TimeoutExpired`` after ``timeout_s``
    (the caller then stops it by pid).
    """
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid == proc.pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            raise subprocess.TimeoutExpired(proc.args, timeout_s)
        time.sleep(0.05)  # polling a child's exit; wait4 has no timeout


def run_with_cpu(argv: Sequence[str], out: IO[bytes], timeout_s: float) -> tuple[int, float]:
    """Run ``argv`` to its end with its output (stdout and stderr) in ``out``; its exit status
    and CPU seconds (:func:`wait_with_cpu`). Killed when ``timeout_s`` runs out."""
    proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        return wait_with_cpu(proc, timeout_s)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()


def per_million(cpu_seconds: float, readings: int) -> float:
    """CPU seconds per million readings (``nan`` when nothing was processed)."""
    return cpu_seconds * 1_000_000 / readings if readings else float("nan")
