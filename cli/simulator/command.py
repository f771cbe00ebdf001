"""``fleetstream simulate``: a simulated device fleet against the configured API and MQTT front.

Exit codes: 0 when every acked reading was found in Postgres (or ``--no-check``), 1 when some
were missing after ``--check-timeout``, 2 for a plan or target that cannot run.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.console import fail
from cli.simulator.plan import Plan, PlanError
from cli.simulator.progress import run_with_progress
from cli.simulator.registration import RegistrationError
from cli.simulator.simulation import Simulation, TargetError
from cli.simulator.tally import Summary
from schemas.settings import get_settings


def simulate(
    devices: Annotated[int, typer.Option(help="devices in the fleet")] = 100,
    duration: Annotated[
        float | None, typer.Option(help="seconds of sending (30 when --readings is not given)")
    ] = None,
    readings: Annotated[int | None, typer.Option(help="readings of the whole fleet")] = None,
    seed: Annotated[int, typer.Option(help="one seed, one fleet and schedule")] = 1,
    prefix: Annotated[str, typer.Option(help="device ids are PREFIX-SEED-NNNNNNN")] = "sim",
    rate: Annotated[float, typer.Option(help="readings a second per device")] = 0.2,
    jitter: Annotated[float, typer.Option(help="interval jitter, 0..1")] = 0.2,
    mqtt_share: Annotated[float, typer.Option(help="share of devices on MQTT")] = 0.5,
    http_batch: Annotated[int, typer.Option(help="readings per HTTP request")] = 1,
    burst_share: Annotated[float, typer.Option(help="share of devices that burst")] = 0.0,
    burst_size: Annotated[int, typer.Option(help="readings in one burst")] = 10,
    offline_share: Annotated[float, typer.Option(help="share that goes offline once")] = 0.0,
    offline: Annotated[float, typer.Option(help="seconds a device stays offline")] = 10.0,
    skew: Annotated[float, typer.Option(help="largest clock skew, seconds")] = 2.0,
    bad_share: Annotated[float, typer.Option(help="share of misbehaving devices")] = 0.0,
    http_concurrency: Annotated[int, typer.Option(help="HTTP requests in flight")] = 64,
    mqtt_max_connections: Annotated[int, typer.Option(help="most MQTT connections")] = 20_000,
    register: Annotated[bool, typer.Option(help="import the devices first")] = True,
    check: Annotated[bool, typer.Option(help="look for acked readings in Postgres")] = True,
    check_timeout: Annotated[float, typer.Option(help="seconds to wait for rows")] = 60.0,
    state_dir: Annotated[Path | None, typer.Option(help="where tokens are kept")] = None,
    allow_remote: Annotated[bool, typer.Option(help="targets outside loopback")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="the summary as JSON on stdout")] = False,
    quiet: Annotated[bool, typer.Option(help="no progress line")] = False,
) -> None:
    """Register a simulated fleet, send its readings over HTTP and MQTT, check Postgres."""
    if duration is None and readings is None:
        duration = 30.0
    try:
        plan = Plan(
            devices=devices, duration_s=duration, readings=readings, seed=seed, prefix=prefix,
            rate_per_s=rate, jitter=jitter, mqtt_share=mqtt_share, http_batch=http_batch,
            burst_share=burst_share, burst_size=burst_size, offline_share=offline_share,
            offline_s=offline, skew_s=skew, bad_share=bad_share,
            http_concurrency=http_concurrency, mqtt_max_connections=mqtt_max_connections,
            register=register, check=check, check_timeout_s=check_timeout, state_dir=state_dir,
        )  # fmt: skip
        simulation = Simulation(get_settings(), plan, allow_remote=allow_remote)
    except (PlanError, TargetError) as exc:
        fail(str(exc), code=2)
    try:
        summary = asyncio.run(_run(simulation, quiet=quiet))
    except RegistrationError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(summary.as_dict(), indent=2))
    else:
        Console(stderr=False).print(summary_table(summary))
    if not summary.ok:
        raise typer.Exit(1)


async def _run(simulation: Simulation, *, quiet: bool) -> Summary:
    if quiet:
        return await simulation.arun()
    return await run_with_progress(simulation)


def summary_table(summary: Summary) -> Table:
    table = Table(title=f"simulate run {summary.run_id} (seed {summary.seed})", show_header=False)
    rows = [
        (
            "devices",
            f"{summary.devices} ({summary.http_devices} HTTP, {summary.mqtt_devices} MQTT)",
        ),
        ("setup (register, connect)", f"{summary.setup_s} s"),
        ("sending took", f"{summary.elapsed_s} s"),
        ("sent", str(summary.sent)),
        ("acked", f"{summary.acked} ({summary.acked_per_s}/s)"),
        ("failed", str(summary.failed)),
        ("misbehaving sent / acked", f"{summary.bad_sent} / {summary.bad_acked}"),
        ("errors", ", ".join(f"{k}: {v}" for k, v in summary.errors.items()) or "none"),
        ("send→ack p50 / p99", f"{summary.ack_p50_ms} / {summary.ack_p99_ms} ms"),
    ]
    if summary.checked:
        rows += [
            ("stored in Postgres", f"{summary.stored} of {summary.acked}"),
            ("missing", f"{summary.missing} (after {summary.check_waited_s} s)"),
            ("send→row p50 / p99", f"{summary.row_p50_ms} / {summary.row_p99_ms} ms"),
        ]
    for name, value in rows:
        table.add_row(name, value)
    return table
