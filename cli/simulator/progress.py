"""The live progress line: stage, sent, acked, failed, errors by status, rate."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live
from rich.text import Text

from cli.simulator.tally import Tally

REFRESH_S = 0.5


def progress_line(stage: str, tally: Tally, elapsed_s: float, rate: float) -> str:
    errors = ", ".join(f"{status} {count}" for status, count in sorted(tally.errors.items()))
    return (
        f"{stage:<11} {elapsed_s:6.1f}s  sent {tally.sent}  acked {tally.acked}  "
        f"failed {tally.failed}  {rate:,.0f} acked/s  errors: {errors or 'none'}"
    )


class Progress:
    """Draws the line on ``console`` (stderr) until :meth:`stop`; ``stage`` is set by the run."""

    def __init__(self, tally: Tally, console: Console, clock: Callable[[], float] = time.monotonic):
        self.tally, self.console, self.clock = tally, console, clock
        self.stage = "starting"
        self._started = clock()
        self._stopped = asyncio.Event()

    def stop(self) -> None:
        self._stopped.set()

    async def run(self) -> None:
        last_acked, last_at = 0, self.clock()
        with Live(Text(""), console=self.console, refresh_per_second=4, transient=False) as live:
            while True:
                now = self.clock()
                rate = (self.tally.acked - last_acked) / max(now - last_at, 1e-6)
                last_acked, last_at = self.tally.acked, now
                line = progress_line(self.stage, self.tally, now - self._started, rate)
                live.update(Text(line))
                if self._stopped.is_set():
                    return
                try:
                    await asyncio.wait_for(self._stopped.wait(), REFRESH_S)
                except TimeoutError:
                    continue
