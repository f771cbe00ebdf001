"""Processes of the local stack: pid files, detached start, liveness, polite stop.

Only processes this stack started are ever signalled: a pid is taken from our own pid file and
checked against ``/proc/<pid>/cmdline`` (a :class:`ProcessSignature`) right before each signal,
so a pid reused by an unrelated process is left alone.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cli.stack.errors import StackError


class _Detached(subprocess.Popen[bytes]):
    """A child meant to outlive this Python process.

    Popen warns ("subprocess N is still running") when such an object is collected; for a
    server we detached on purpose that is the expected state, so the warning is skipped.
    """

    def __del__(self) -> None:
        return None


#: Children started by this Python process, kept so their exit is collected (no zombies).
_children: dict[int, _Detached] = {}


@dataclass(frozen=True)
class RunAs:
    """An unprivileged OS user that a child is switched to (used only when we run as root)."""

    name: str
    uid: int
    gid: int
    home: Path


@dataclass(frozen=True)
class ProcessSignature:
    """What the command line of a process we started looks like.

    It matches when the basename of argv[0] is ``executable`` and every marker is one of the
    arguments (markers are paths inside the stack home, so they identify *our* instance).
    """

    executable: str
    markers: tuple[str, ...]

    def matches(self, cmdline: Sequence[str]) -> bool:
        if not cmdline or Path(cmdline[0]).name != self.executable:
            return False
        return all(marker in cmdline for marker in self.markers)


def read_pid_file(path: Path) -> int | None:
    """The positive pid written in ``path``, or None if it is missing or not a pid."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def write_pid_file(path: Path, pid: int) -> None:
    """Record ``pid`` in ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{pid}\n", encoding="ascii")
    tmp.replace(path)


def parse_cmdline(raw: bytes) -> list[str]:
    """Split the NUL-separated content of ``/proc/<pid>/cmdline`` into arguments."""
    if not raw:
        return []
    return [part.decode(errors="replace") for part in raw.rstrip(b"\0").split(b"\0")]


def parse_stat_state(stat: str) -> str | None:
    """The state letter (R, S, Z, ...) of a ``/proc/<pid>/stat`` line; comm may hold ')'."""
    _, sep, rest = stat.rpartition(")")
    fields = rest.split()
    return fields[0] if sep and fields else None


def read_cmdline(pid: int) -> list[str]:
    """The arguments of ``pid`` (empty if it is gone, a zombie or unreadable)."""
    try:
        return parse_cmdline(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return []


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        child.poll()  # collects its exit status, so it is no zombie of ours


def exit_code(pid: int) -> int | None:
    """The exit status of a child this Python process started, once it has exited."""
    child = _children.get(pid)
    return None if child is None else child.poll()


def is_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie (a dead process not yet reaped)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    try:
        state = parse_stat_state(Path(f"/proc/{pid}/stat").read_text(errors="replace"))
    except OSError:
        return False
    return state not in (None, "Z", "X")


def is_ours(pid: int, signature: ProcessSignature) -> bool:
    """True when ``pid`` is alive and its command line matches ``signature``."""
    return is_alive(pid) and signature.matches(read_cmdline(pid))


def live_pid(pid_file: Path, signature: ProcessSignature) -> int | None:
    """The pid recorded in ``pid_file`` if that process is alive and still ours, else None."""
    pid = read_pid_file(pid_file)
    return pid if pid is not None and is_ours(pid, signature) else None


def clear_stale_pid(pid_file: Path, signature: ProcessSignature) -> bool:
    """Remove ``pid_file`` if it names no live process of ours; True when it was removed."""
    if not pid_file.exists() or live_pid(pid_file, signature) is not None:
        return False
    pid_file.unlink(missing_ok=True)
    return True


def rotate_log(log: Path) -> None:
    """Keep one previous log: ``x.log`` becomes ``x.log.1`` so each start has its own log."""
    if log.exists() and log.stat().st_size > 0:
        log.replace(log.with_name(log.name + ".1"))


def start_detached(
    argv: Sequence[str],
    log: Path,
    *,
    cwd: Path,
    run_as: RunAs | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session so it outlives us; stdout and stderr go to ``log``.

    stdin is /dev/null. With ``run_as`` the child switches to that user and group before exec
    (the same as ``runuser -u``, but the pid we get is the service's own).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        child = _Detached(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=_child_env(run_as, env),
            start_new_session=True,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
    _children[child.pid] = child
    return child


StepLines = Callable[[str], None]
step_lines: ContextVar[StepLines | None] = ContextVar("step_lines", default=None)
"""Where the output lines of a long one-shot command (``run(..., stream=True)``: apt-get, Maven)
go while it runs: the command's progress line (:mod:`cli.progress`) sets it, so every service's
preparation shows its step lines without a callback passed through each of them."""


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    run_as: RunAs | None = None,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
    timeout_s: float = 120.0,
    stream: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run a one-shot command to completion, capturing its output (stdout and stderr merged);
    with ``stream``, each line also goes to :data:`step_lines` as it is printed. Killed after
    ``timeout_s`` (StackError)."""
    sink = step_lines.get() if stream else None
    try:
        with subprocess.Popen(  # noqa: S603 -- argv is built by the stack, never by a shell
            list(argv),
            stdin=subprocess.DEVNULL if input_text is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=_child_env(run_as, env),
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        ) as child:
            output = _collect(child, input_text, timeout_s, sink)
    except OSError as exc:
        raise StackError(f"cannot run `{' '.join(argv)}`: {exc}") from exc
    if output is None:
        raise StackError(f"`{' '.join(argv)}` did not finish within {timeout_s:.0f} s")
    return subprocess.CompletedProcess(list(argv), child.returncode, output, None)


def _collect(
    child: subprocess.Popen[bytes], input_text: str | None, timeout_s: float, sink: StepLines | None
) -> str | None:
    """The child's output, each line handed to ``sink`` as it comes; None when it was killed
    for taking longer than ``timeout_s``. Waits with relative timeouts only (``select``), never
    on a timer thread: those sleep until a clock time, which faketime's shifted clock (the unit
    tests' second run) never reaches."""
    if input_text is not None and child.stdin is not None:
        child.stdin.write(input_text.encode())
        child.stdin.close()
    stdout = child.stdout
    if stdout is None:
        raise ValueError("the child's output is read through a pipe")
    deadline = time.monotonic() + timeout_s
    output, partial = bytearray(), b""
    with selectors.DefaultSelector() as selector:
        selector.register(stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not selector.select(left):
                continue
            chunk = os.read(stdout.fileno(), 65536)
            if not chunk:
                break
            output += chunk
            partial = _hand_lines(partial + chunk, sink)
    if sink is not None and partial:
        sink(partial.decode("utf-8", errors="replace"))
    try:
        child.wait(timeout=max(deadline - time.monotonic(), 0.0))
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return None
    return output.decode("utf-8", errors="replace")


def _hand_lines(data: bytes, sink: StepLines | None) -> bytes:
    """Give ``sink`` every complete line of ``data``; return the incomplete rest."""
    *lines, rest = data.split(b"\n")
    if sink is not None:
        for line in lines:
            sink(line.decode("utf-8", errors="replace").rstrip("\r"))
    return rest


def _child_env(run_as: RunAs | None, env: Mapping[str, str] | None) -> dict[str, str] | None:
    if run_as is None and env is None:
        return None
    merged = dict(os.environ)
    if run_as is not None:
        merged.update(HOME=str(run_as.home), USER=run_as.name, LOGNAME=run_as.name)
    merged.update(env or {})
    return merged


def wait_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``condition`` until it is true (True) or ``timeout_s`` has passed (False)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(interval_s, remaining))


StopOutcome = Literal["not running", "stopped", "killed", "still running"]


def stop(
    pid: int,
    signature: ProcessSignature,
    *,
    sig: signal.Signals = signal.SIGTERM,
    grace_s: float = 10.0,
    kill_wait_s: float = 10.0,
) -> StopOutcome:
    """Stop one process we started: ``sig``, then SIGKILL if it outlives ``grace_s``.

    Before each signal the pid must be alive and match ``signature``; a pid that does not is
    never signalled ("not running"). "stopped": it exited on ``sig``; "killed": it needed
    SIGKILL; "still running": it survived SIGKILL for ``kill_wait_s``.
    """
    if not _signal_if_ours(pid, signature, sig):
        return "not running"
    if wait_until(lambda: not is_alive(pid), grace_s):
        return "stopped"
    if not _signal_if_ours(pid, signature, signal.SIGKILL):
        return "stopped"
    return "killed" if wait_until(lambda: not is_alive(pid), kill_wait_s) else "still running"


def _signal_if_ours(pid: int, signature: ProcessSignature, sig: signal.Signals) -> bool:
    if not is_ours(pid, signature):
        return False
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    except PermissionError as exc:
        raise StackError(f"not allowed to signal pid {pid}: {exc}") from exc
    return True


def tail_lines(path: Path, lines: int = 30, max_bytes: int = 256 * 1024) -> list[str]:
    """The last ``lines`` lines of ``path`` (reads at most ``max_bytes`` from its end)."""
    if lines <= 0:
        return []
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            handle.seek(max(0, size - max_bytes))
            data = handle.read()
    except OSError:
        return []
    return data.decode(errors="replace").splitlines()[-lines:]


def file_contains(path: Path, needle: str, max_bytes: int = 64 * 1024 * 1024) -> bool:
    """True when ``needle`` occurs in the first ``max_bytes`` of ``path`` (read in chunks)."""
    pattern = needle.encode()
    keep = len(pattern) - 1
    tail = b""
    read = 0
    try:
        with path.open("rb") as handle:
            while read < max_bytes:
                chunk = handle.read(1024 * 1024)
                if not chunk:
                    return False
                read += len(chunk)
                if pattern in tail + chunk:
                    return True
                tail = chunk[-keep:] if keep else b""
    except OSError:
        return False
    return False
