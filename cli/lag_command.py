"""``fleetstream lag``: how far each consumer group is behind, per partition.

Lag is the end offset minus the group's committed offset (what a restarted consumer would read
again); a partition the group never committed on shows ``-`` and counts from its first retained
offset. Without
``--group`` every group the cluster knows is shown, which includes Faust's worker group
(``FLEET_WORKER__APP_ID``) and the sink groups (``<app id>.sink-postgres``, ...).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Annotated

import typer

from cli.console import operator_errors
from cli.registries import print_json
from connectors.kafka.inspection import Inspector, PartitionLag
from schemas.settings import get_settings


def lag(
    group: Annotated[
        list[str] | None, typer.Option("--group", "-g", help="this group; repeat for more")
    ] = None,
    topic: Annotated[
        list[str] | None, typer.Option("--topic", "-t", help="only this topic; repeat for more")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
) -> None:
    """Committed vs end offset per consumer group and partition."""
    with operator_errors():
        found = Inspector(get_settings().kafka.bootstrap_servers)
        rows = found.lag(group or found.groups(), topic)
    if as_json:
        print_json(
            [
                {
                    "group": row.group,
                    "topic": row.topic,
                    "partition": row.partition,
                    "committed": row.committed,
                    "start": row.start,
                    "end": row.end,
                    "lag": row.lag,
                }
                for row in rows
            ]
        )
        return
    _table(rows)


def _table(rows: list[PartitionLag]) -> None:
    totals: dict[str, int] = defaultdict(int)
    typer.echo(f"{'GROUP':40} {'TOPIC':32} {'PART':>4} {'COMMITTED':>12} {'END':>12} {'LAG':>10}")
    for row in rows:
        committed = "-" if row.committed is None else str(row.committed)
        typer.echo(
            f"{row.group:40} {row.topic:32} {row.partition:>4} {committed:>12} "
            f"{row.end:>12} {row.lag:>10,}"
        )
        totals[row.group] += row.lag
    for name, total in sorted(totals.items()):
        typer.echo(f"{name}: lag {total:,}")
    if not rows:
        typer.echo("no committed offsets found")
