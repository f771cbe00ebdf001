"""What every ``fleetstream`` command prints to the operator: progress, and errors as one line.

The lowest module of the CLI: the commands and :mod:`cli.runner` import it, it imports none of
them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer

from schemas.errors import FleetError


def say(message: str) -> None:
    """Progress, on stderr."""
    typer.secho(f"fleetstream: {message}", fg=typer.colors.CYAN, err=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``message`` as an error (stderr, red) and exit with ``code``."""
    typer.secho(f"fleetstream: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


@contextmanager
def operator_errors() -> Iterator[None]:
    """Errors an operator can act on (a service down, a topic mismatch) print as one clear
    message and exit 1; anything else keeps its traceback."""
    from cli.stack.errors import StackError

    try:
        yield
    except (StackError, FleetError) as exc:
        typer.secho(f"fleetstream: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from exc
