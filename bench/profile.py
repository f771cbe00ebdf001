"""Where a worker's time goes: py-spy samples it for a while; the collapsed stacks are summed
into the functions that hold the most samples (own time) for RESULTS.md."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

GENERIC = (
    "asyncio/",
    "threading.py",
    "typer/",
    "click/",
    "runpy",
    "cli/main.py",
    "cli/runner.py",
    "mode/worker.py",
    "<module>",
)
"""Frames on (almost) every stack: left out of the inclusive ranking."""
RATE = 100
"""Samples per second; only threads holding the GIL are sampled (``--gil``)."""


def py_spy() -> str | None:
    """The py-spy executable (a dev dependency), or None when it is not installed."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _frame_name(frame: str) -> str:
    """'handle (faust/streams.py:123)' → 'handle (faust/streams.py)': lines vary per sample."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    short = "/".join(path.split("/")[-2:])
    return f"{name} ({short})" if path else name


@dataclass(frozen=True)
class Profile:
    samples: int
    own: list[tuple[str, float]]
    """Functions by share of samples where they were the innermost frame."""
    inclusive: list[tuple[str, float]]
    """Functions by share of samples where they were anywhere on the stack."""


def summarize_collapsed(text: str, top: int = 12) -> Profile:
    """Sum py-spy's raw (collapsed) output: ``frame;frame;... count`` per line."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(frame) for frame in stack.split(";") if frame]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for name in set(frames):
            if not any(marker in name for marker in GENERIC):
                inclusive[name] += count
    if not total:
        return Profile(0, [], [])
    return Profile(
        total,
        [(name, n / total) for name, n in own.most_common(top)],
        [(name, n / total) for name, n in inclusive.most_common(top)],
    )


def describe(profile: Profile, seconds: float, rate: int) -> list[str]:
    """Lines for RESULTS.md."""
    if not profile.samples:
        return ["py-spy collected no samples"]
    held = profile.samples / (seconds * rate)
    own = "; ".join(f"{name} {share:.0%}" for name, share in profile.own)
    inclusive = "; ".join(f"{name} {share:.0%}" for name, share in profile.inclusive)
    return [
        f"py-spy --gil, {seconds:.0f} s at {rate}/s: a thread held the GIL in {held:.0%} of the "
        f"samples ({profile.samples:,}); own time of those: {own}",
        f"py-spy, inclusive time (event loop and thread plumbing left out): {inclusive}",
    ]


class Sampler:
    """Runs ``py-spy record --gil`` on ``pid`` for ``seconds`` after ``delay_s``, in the
    background: in a GIL-bound Python process, where the interpreter's time goes."""

    def __init__(self, executable: str, pid: int, out: Path, *, delay_s: float, seconds: float):
        self._argv = [
            executable,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            str(RATE),
            "--gil",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ]
        self.out = out
        self.seconds = seconds
        self._timer = threading.Timer(delay_s, self._record)
        self._proc: subprocess.Popen[bytes] | None = None

    def _record(self) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 - py-spy on our own child
            self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def start(self) -> None:
        self._timer.start()

    def finish(self, timeout_s: float = 60) -> Profile:
        """Wait for the recording (it ends by itself) and summarize it."""
        self._timer.join()
        if self._proc is not None:
            try:
                self._proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        text = self.out.read_text(errors="replace") if self.out.exists() else ""
        return summarize_collapsed(text)
