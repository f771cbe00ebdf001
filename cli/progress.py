"""The one progress display of every long ``fleetstream`` command.

A line on stderr with a spinner, what is happening, a count with its rate (when the work is
countable), the elapsed time and the latest step line of a child program (apt-get, Maven:
``cli.stack.process.step_lines``); messages said meanwhile (:func:`cli.console.say`) print
above it and stay. On a terminal it redraws four times a second;
elsewhere (CI, a pipe) rich draws nothing live and only the messages are printed, so logs stay
readable.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console
from rich.progress import (
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from cli.console import sayer
from cli.stack.process import step_lines

DETAIL_MAX = 80
"""Characters of a step line shown (a Maven line can be very long)."""


def rate(count: float, elapsed_s: float) -> float:
    """``count`` per second over ``elapsed_s`` (0 before any time passed)."""
    return count / elapsed_s if elapsed_s > 0 else 0.0


class _CountColumn(ProgressColumn):
    """``1,234 rows  567 rows/s``: the count since the start and its mean rate."""

    def render(self, task: Task) -> Text:
        unit = task.fields.get("unit")
        if not unit:
            return Text("")
        per_s = rate(task.completed, task.elapsed or 0.0)
        return Text(f"{task.completed:,.0f} {unit}  {per_s:,.0f} {unit}/s", style="cyan")


@dataclass
class Activity:
    """One long piece of work as the operator sees it."""

    progress: Progress
    task: TaskID

    @property
    def console(self) -> Console:
        return self.progress.console

    @property
    def count(self) -> float:
        return self.progress.tasks[0].completed

    @property
    def elapsed_s(self) -> float:
        return self.progress.tasks[0].elapsed or 0.0

    def advance(self, amount: float = 1) -> None:
        self.progress.update(self.task, advance=amount)

    def count_to(self, count: float) -> None:
        """Set the count (for work that keeps its own tally)."""
        self.progress.update(self.task, completed=count)

    def describe(self, description: str) -> None:
        """What is happening now (the text before the count)."""
        self.progress.update(self.task, description=description)

    def note(self, detail: str) -> None:
        """The latest step line of a child program; replaced by the next one."""
        line = detail.strip()
        if line:
            self.progress.update(self.task, detail=line[:DETAIL_MAX])

    def say(self, message: str) -> None:
        """A message that stays, printed above the progress line."""
        self.console.print(f"fleetstream: {message}", style="cyan", markup=False, highlight=False)

    def summary(self, what: str) -> str:
        """``what: 1,234 rows in 5.0 s (246 rows/s)`` for the closing message."""
        unit = self.progress.tasks[0].fields.get("unit") or "steps"
        per_s = rate(self.count, self.elapsed_s)
        return f"{what}: {self.count:,.0f} {unit} in {self.elapsed_s:.1f} s ({per_s:,.0f} {unit}/s)"


@contextmanager
def activity(description: str, unit: str | None = None) -> Iterator[Activity]:
    """Show progress on stderr while the block runs; ``unit`` names what is counted (rows,
    letters, records), None for work that is not counted (starting the stack)."""
    console = Console(stderr=True)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        _CountColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}", style="dim"),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=None, unit=unit, detail="")
        shown = Activity(progress, task)
        said, stepped = sayer.set(shown.say), step_lines.set(shown.note)
        try:
            yield shown
        finally:
            step_lines.reset(stepped)
            sayer.reset(said)
