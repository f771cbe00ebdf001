"""``fleetstream topics create|list|describe``: the project's topics and what the cluster holds.

``list`` and ``describe`` read the cluster (any topic, not only the project's); sizes are in
records (end - start offset), see :mod:`connectors.kafka.inspection`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli import runner
from cli.console import operator_errors
from cli.registries import print_json
from connectors.kafka.inspection import Inspector, TopicState
from schemas.settings import get_settings

topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics: create, list, describe.")

JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON instead of a table")]


def inspector() -> Inspector:
    return Inspector(get_settings().kafka.bootstrap_servers)


@topics_app.command("create")
def create() -> None:
    """Create missing project topics with their partition counts and configs."""
    with operator_errors():
        runner.create_topics(get_settings())


@topics_app.command("list")
def list_topics(
    internal: Annotated[bool, typer.Option(help="also Kafka's own (__consumer_offsets)")] = False,
    prefix: Annotated[str | None, typer.Option(help="only names starting with this")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Topics with partitions, replication and records held."""
    with operator_errors():
        found = inspector()
        names = [n for n in found.topic_names(internal=internal) if n.startswith(prefix or "")]
        topics = found.topics(names, configs=False)
    if as_json:
        print_json([_summary(topic) for topic in topics])
        return
    typer.echo(f"{'TOPIC':48} {'PARTITIONS':>10} {'REPLICAS':>8} {'RECORDS':>12}")
    for topic in topics:
        typer.echo(
            f"{topic.name:48} {len(topic.partitions):>10} {topic.replication:>8} "
            f"{topic.records:>12,}"
        )
    typer.echo(f"{len(topics)} topics")


@topics_app.command("describe")
def describe(
    topic: Annotated[str, typer.Argument(help="the topic's name")],
    as_json: JsonOpt = False,
) -> None:
    """A topic's partitions (leader, replicas, in sync, offsets) and the configs set on it."""
    with operator_errors():
        [state] = inspector().topics([topic])
    if as_json:
        print_json(_detail(state))
        return
    typer.echo(
        f"{state.name}: {len(state.partitions)} partitions, replication {state.replication}, "
        f"{state.records:,} records, {state.under_replicated} under-replicated"
    )
    typer.echo(
        f"{'PARTITION':>9} {'LEADER':>6} {'REPLICAS':10} {'IN SYNC':10} {'START':>12} "
        f"{'END':>12} {'RECORDS':>12}"
    )
    for p in state.partitions:
        typer.echo(
            f"{p.partition:>9} {p.leader:>6} {_ids(p.replicas):10} {_ids(p.in_sync):10} "
            f"{p.start:>12} {p.end:>12} {p.records:>12,}"
        )
    typer.echo("configs set on the topic:" if state.configs else "no configs set on the topic")
    for key, value in state.configs.items():
        typer.echo(f"  {key} = {value}")


def _ids(ids: tuple[int, ...]) -> str:
    return ",".join(str(i) for i in ids)


def _summary(topic: TopicState) -> dict[str, Any]:
    return {
        "name": topic.name,
        "partitions": len(topic.partitions),
        "replication": topic.replication,
        "records": topic.records,
    }


def _detail(topic: TopicState) -> dict[str, Any]:
    return {
        **_summary(topic),
        "under_replicated": topic.under_replicated,
        "configs": dict(topic.configs),
        "partition_states": [
            {
                "partition": p.partition,
                "leader": p.leader,
                "replicas": list(p.replicas),
                "in_sync": list(p.in_sync),
                "start": p.start,
                "end": p.end,
                "records": p.records,
            }
            for p in topic.partitions
        ],
    }
