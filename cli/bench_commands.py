"""``fleetstream bench``: the benchmark harness (bench/) on the local stack.

Every command appends a block (machine, versions, command, results, targets) to
bench/RESULTS.md and exits 1 if a step failed. The stack must be up (``fleetstream setup``).
``bench/`` is not part of the installed package, so the commands import it only when they run,
and only from a source checkout.
"""

from __future__ import annotations

from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.console import fail

if TYPE_CHECKING:
    from bench.harness import Plan

bench_app = typer.Typer(
    no_args_is_help=True,
    help="Benchmarks on the local stack; results are appended to bench/RESULTS.md.",
)

Readings = Annotated[int, typer.Option(min=1000, help="readings preloaded on the raw topic")]
_options: dict[str, Path] = {}


@bench_app.callback()
def options(
    results: Annotated[
        Path | None, typer.Option(help="append the block here instead of bench/RESULTS.md")
    ] = None,
) -> None:
    """Benchmarks on the local stack; results are appended to bench/RESULTS.md."""
    if find_spec("bench") is None:
        fail("the bench commands run from a source checkout (bench/ is not installed)")
    if results is not None:
        _options["results"] = results


def _say(message: str) -> None:
    typer.secho(message, fg=typer.colors.CYAN, err=True)


def _run(plan: Plan) -> None:
    from bench import harness

    outcome = harness.run(
        plan, harness.command_line(), progress=_say, results=_options.get("results")
    )
    typer.echo(outcome.block)
    if outcome.failures:
        raise typer.Exit(1)


@bench_app.command("all")
def bench_all() -> None:
    """Every scenario and baseline (what `make bench` runs; ~9-10 minutes on 2 cores)."""
    from bench.harness import all_plan

    _run(all_plan())


@bench_app.command()
def ingest(
    seconds: Annotated[int, typer.Option(min=1, max=120, help="per batch size")] = 15,
) -> None:
    """HTTP → Kafka acked, batches of 1, 100 and 1,000 readings (load from wrk)."""
    from bench.harness import Plan

    _run(Plan(ingest=True, ingest_seconds=seconds))


@bench_app.command()
def pipeline(
    workers: Annotated[int, typer.Option(min=1, max=8, help="worker processes")] = 1,
    readings: Readings = 1_000_000,
    profile: Annotated[str, typer.Option(help="py-spy: auto, always or never")] = "auto",
    flows: Annotated[
        int, typer.Option(min=0, max=100, help="also run with N flows on every device")
    ] = 0,
    same_job: Annotated[
        int,
        typer.Option(
            min=0,
            max=5_000_000,
            help="also N readings through one worker and Quix Streams doing the same job",
        ),
    ] = 0,
) -> None:
    """Preloaded raw envelopes → worker(s) → rows in Postgres + dead letters."""
    from bench.harness import Plan

    _run(
        Plan(
            pipeline_workers=(workers,),
            pipeline_readings=readings,
            profile=profile,
            pipeline_flows=flows,
            same_job_readings=same_job,
        )
    )


@bench_app.command()
def mqtt(
    readings: Annotated[int, typer.Option(min=1000, max=5_000_000)] = 200_000,
    per_message: Annotated[int, typer.Option(min=1, max=1000, help="readings per message")] = 1,
) -> None:
    """paho publishers → Mosquitto → one bridge → worker → rows; and HTTP → Kafka beside it."""
    from bench.harness import Plan

    _run(Plan(mqtt_readings=readings, mqtt_per_message=per_message))


@bench_app.command("mqtt-front")
def mqtt_front(
    readings: Annotated[int, typer.Option(min=1000, max=2_000_000)] = 100_000,
    connections: Annotated[int, typer.Option(min=1, max=500, help="devices publishing")] = 32,
    window: Annotated[
        int, typer.Option(min=1, max=64, help="unacked messages per connection")
    ] = 16,
) -> None:
    """MQTT publishers → one MQTT front (PUBACK after Kafka) → worker → rows; PUBACK latency."""
    from bench.harness import Plan

    _run(
        Plan(
            mqtt_front_readings=readings,
            mqtt_front_connections=connections,
            mqtt_front_window=window,
        )
    )


@bench_app.command()
def latency(
    seconds: Annotated[float, typer.Option(min=5, max=300)] = 30.0,
    rate: Annotated[float, typer.Option(min=100, max=50_000, help="readings/s")] = 5000.0,
) -> None:
    """A steady open-loop load through API and worker; request → row percentiles."""
    from bench.harness import Plan

    _run(Plan(latency=True, latency_seconds=seconds, latency_rate=rate))


@bench_app.command()
def secure(
    rounds: Annotated[int, typer.Option(min=1, max=5, help="rounds of each mode")] = 2,
    seconds: Annotated[int, typer.Option(min=3, max=60, help="ingest per round")] = 10,
) -> None:
    """Ingest and pipeline on a plain and a secure stack of its own, alternating: the cost of
    secure mode (TLS, SASL_SSL, ACLs) as secure ÷ plain."""
    from bench.harness import Plan

    _run(Plan(secure_rounds=rounds, secure_seconds=seconds))


@bench_app.command()
def floor() -> None:
    """The library calls every stored reading needs, in µs (``bench.floor``; ``all`` adds the
    budget they leave beside the pipeline run)."""
    from bench.harness import Plan

    _run(Plan(floor=True))


@bench_app.command("fleet-cost")
def fleet_cost(
    rounds: Annotated[int, typer.Option(min=1, max=20, help="interleaved rounds")] = 3,
) -> None:
    """One worker's CPU per reading at 2k, 20k and 100k registered devices, same total rate
    (agents in process on a virtual clock), and memory per device (``bench.fleet_cost``)."""
    from bench.harness import Plan

    _run(Plan(fleet_cost=True, fleet_cost_rounds=rounds))


@bench_app.command()
def baselines(
    kafka_tools: Annotated[bool, typer.Option(help="Kafka's perf tools")] = True,
    per_message: Annotated[bool, typer.Option(help="Faust per message, Quix, seed 001")] = True,
) -> None:
    """Kafka's ProducerPerformance/ConsumerPerformance and the per-message designs."""
    from bench.harness import Plan

    _run(Plan(kafka_tools=kafka_tools, per_message_baselines=per_message))
