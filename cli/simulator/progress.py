"""What the simulation's progress line says: stage, sent, acked, failed, errors by status.

``fleetstream simulate`` draws it with the CLI's one progress display (:mod:`cli.progress`:
acked readings counted with their rate, elapsed time); :func:`progress_line` is the same as a
plain line, elapsed time and rate included, for logs.
"""

from __future__ import annotations

import asyncio

from cli.progress import activity
from cli.simulator.simulation import Simulation
from cli.simulator.tally import Summary, Tally

REFRESH_S = 0.25


def tally_line(stage: str, tally: Tally) -> str:
    errors = ", ".join(f"{status} {count}" for status, count in sorted(tally.errors.items()))
    return (
        f"{stage:<11} sent {tally.sent}  acked {tally.acked}  failed {tally.failed}  "
        f"errors: {errors or 'none'}"
    )


def progress_line(stage: str, tally: Tally, elapsed_s: float, rate: float) -> str:
    counts = tally_line(stage, tally)
    return f"{counts[:11]} {elapsed_s:6.1f}s {counts[11:]}  {rate:,.0f} acked/s"


async def run_with_progress(simulation: Simulation) -> Summary:
    """Run ``simulation`` while the progress line follows its stage and tally."""
    with activity("starting", unit="acked") as shown:

        def show() -> None:
            shown.count_to(simulation.tally.acked)
            shown.describe(tally_line(simulation.stage, simulation.tally))

        async def follow() -> None:
            while True:
                show()
                await asyncio.sleep(REFRESH_S)

        following = asyncio.create_task(follow())
        try:
            return await simulation.arun()
        finally:
            following.cancel()
            show()
