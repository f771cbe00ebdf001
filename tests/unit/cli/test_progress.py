"""The CLI's one progress display: counts, rates, and where messages and step lines go."""

from __future__ import annotations

import re

from cli import console
from cli.progress import activity, rate
from cli.stack import process


def test_rate_is_zero_before_time_passed() -> None:
    assert rate(10, 0.0) == 0.0
    assert rate(10, 4.0) == 2.5


def test_messages_and_step_lines_go_to_the_line_while_it_is_drawn() -> None:
    with activity("importing", unit="rows") as shown:
        assert console.sayer.get() is not None and process.step_lines.get() is not None
        shown.advance(3)
        shown.count_to(12)
        process.step_lines.get()("Downloading from central: " + "x" * 200)  # type: ignore[misc]
        assert len(shown.progress.tasks[0].fields["detail"]) == 80
        assert shown.count == 12
        assert re.fullmatch(r"done: 12 rows in \d+\.\d s \([\d,]+ rows/s\)", shown.summary("done"))
    assert console.sayer.get() is None and process.step_lines.get() is None
