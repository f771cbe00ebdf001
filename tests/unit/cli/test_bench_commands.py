"""The bench commands without bench/ (an installed wheel): a clear error, not a traceback."""

from __future__ import annotations

import sys

import pytest
from typer.testing import CliRunner

from cli.bench_commands import bench_app


def test_without_bench_the_commands_say_they_need_a_source_checkout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "bench", None)  # as if bench/ were not importable
    result = CliRunner().invoke(bench_app, ["floor"])
    assert result.exit_code == 1
    assert "the bench commands run from a source checkout" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
