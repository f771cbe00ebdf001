"""Flow dry runs evaluated outside the API's process, each with a time limit.

The CEL package holds the GIL for as long as an expression evaluates, so a slow flow evaluated
in the API's process would hold every request, ``/health`` included, whether it ran on the event
loop or in a worker thread. And a thread cannot be killed: a timeout could only answer for it
(and not even that while the GIL is held), the evaluation would run on to its end, and every
dry run timed out so would keep a thread and the GIL. A dry run is therefore evaluated in an
*evaluator* process (:mod:`streams.flow_engine.dry_run`), which can be killed:

* it answers within ``FLEET_API__DRY_RUN_TIMEOUT_S`` (1 s) or its evaluator is killed and the
  request answers 422 (:class:`DryRunTimeout`). The static cost limit of expressions
  (``streams.flow_engine.cost``) keeps this a backstop: what it cannot bound is the length of
  the lists a reading or an earlier node hands an expression.
* at most ``FLEET_API__DRY_RUNS_AT_ONCE`` (2) evaluate at once, one evaluator each; another is
  refused at once with 503 and ``Retry-After`` (:class:`DryRunsBusy`), not queued: a queue
  would hold its requests for up to a timeout per dry run ahead of them.
* an evaluator is started when a dry run needs one and none is idle, and kept for the next:
  the first dry run of an API process, and the first after one was stopped, also waits for it
  to start (~1 s here, mostly importing the CEL package; not counted in the time limit).
  An idle evaluator uses ~50 MB; it exits when the API closes its stdin (or dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Final, cast

import msgspec
from fastapi import Depends, Request

from schemas.devices import Device
from schemas.events import encoder
from schemas.readings import Reading
from streams.flow_engine.dry_run import HEADER, READY, DryRun, Reply, Sample

EVALUATOR: Final = (sys.executable, "-m", "streams.flow_engine.dry_run")
START_TIMEOUT_S: Final = 30.0
"""How long an evaluator may take to start (import) before the dry run answers 503."""

_encode = msgspec.json.Encoder().encode
_decode_reply = msgspec.json.Decoder(Reply).decode


class DryRunsBusy(Exception):
    """As many dry runs as allowed are evaluating."""


class DryRunTimeout(Exception):
    """The evaluation took longer than the time limit; its evaluator was killed."""


class EvaluatorFailed(Exception):
    """An evaluator did not start, or ended without answering."""


class _Evaluator:
    """One evaluator process, spoken to in frames."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        if process.stdin is None or process.stdout is None:
            raise ValueError("an evaluator is spoken to on its stdin and stdout")
        self.process = process
        self._stdin, self._stdout = process.stdin, process.stdout

    @classmethod
    async def start(cls, command: Sequence[str]) -> _Evaluator:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C in the API's terminal is the API's to handle
        )
        evaluator = cls(process)
        try:
            ready = await asyncio.wait_for(evaluator._read(), START_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError) as exc:
            await evaluator.stop(ending=isinstance(exc, asyncio.IncompleteReadError))
            raise EvaluatorFailed(f"the dry-run evaluator did not start: {exc!r}") from exc
        except BaseException:
            await evaluator.stop()
            raise
        if ready != READY:
            await evaluator.stop()
            raise EvaluatorFailed(f"the dry-run evaluator said {ready[:40]!r}, not ready")
        return evaluator

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    async def ask(self, frame: bytes) -> bytes:
        self._stdin.write(HEADER.pack(len(frame)) + frame)
        await self._stdin.drain()
        return await self._read()

    async def _read(self) -> bytes:
        (length,) = HEADER.unpack(await self._stdout.readexactly(HEADER.size))
        return await self._stdout.readexactly(length)

    async def stop(self, *, ending: bool = False) -> None:
        """Kill the process (it may be inside an evaluation) and reap it. One that is ``ending``
        by itself (its stdout closed) gets a moment to: killing one that has just exited would
        reap it behind asyncio's back (``Popen.send_signal`` polls first), which then reports
        exit code 255."""
        self._stdin.close()
        if ending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 1.0)
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()


class DryRunner:
    """Evaluates dry runs in evaluator processes, ``at_once`` at a time, each within
    ``timeout_s``."""

    def __init__(
        self, *, timeout_s: float, at_once: int, command: Sequence[str] = EVALUATOR
    ) -> None:
        self.timeout_s = timeout_s
        self.at_once = at_once
        self._command = tuple(command)
        self._idle: list[_Evaluator] = []
        self._running = 0
        self.evaluating = 0
        """Dry runs handed to an evaluator and not answered yet."""

    async def run(self, dry_run: DryRun) -> Reply:
        """The evaluator's reply; raises :class:`DryRunsBusy`, :class:`DryRunTimeout` or
        :class:`EvaluatorFailed`."""
        if self._running >= self.at_once:
            raise DryRunsBusy(f"{self.at_once} dry runs are evaluating")
        self._running += 1
        try:
            return await self._run(dry_run)
        finally:
            self._running -= 1

    async def _run(self, dry_run: DryRun) -> Reply:
        frame = _encode(dry_run)
        evaluator = await self._evaluator()
        self.evaluating += 1
        try:
            reply = await asyncio.wait_for(evaluator.ask(frame), self.timeout_s)
        except TimeoutError as exc:
            await evaluator.stop()
            raise DryRunTimeout(f"longer than {self.timeout_s:g} s") from exc
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await evaluator.stop(ending=True)
            code = evaluator.process.returncode
            raise EvaluatorFailed(f"the dry-run evaluator ended (exit code {code})") from exc
        except BaseException:  # cancelled: the evaluator may be mid-evaluation
            await evaluator.stop()
            raise
        finally:
            self.evaluating -= 1
        self._idle.append(evaluator)
        return _decode_reply(reply)

    async def _evaluator(self) -> _Evaluator:
        while self._idle:
            evaluator = self._idle.pop()
            if evaluator.alive:
                return evaluator
            await evaluator.stop()
        return await _Evaluator.start(self._command)

    async def close(self) -> None:
        """Stop the idle evaluators (one still evaluating is stopped by its dry run's end)."""
        idle, self._idle = self._idle, []
        for evaluator in idle:
            await evaluator.stop()


def sample_of(reading: Reading, device: Device | None, now: datetime) -> Sample:
    """``reading`` enriched as the worker would with its registered ``device`` (None: not
    registered): name, profile, tags, location, time zone. ``now`` stands in for a reading
    without a timestamp. The API's dry-run route and ``fleetstream flows dry-run`` both use it."""
    metadata: dict[str, Any] = {} if device is None else dict(device.metadata)
    location = metadata.get("location")
    zone = metadata.get("timezone")
    if not isinstance(zone, str) and isinstance(location, dict):
        zone = location.get("timezone")
    return Sample(
        event_id=reading.event_id or "dry-run",
        device_id=reading.device_id,
        ts=reading.timestamp or now,
        sensors=msgspec.json.decode(encoder.encode(reading.sensors)),
        metadata=None if reading.metadata is None else dict(reading.metadata),
        device={
            "id": reading.device_id,
            "name": None if device is None else device.name,
            "profile": None if device is None else device.profile,
            "tags": [] if device is None else list(device.tags),
            "location": location,
            "timezone": zone if isinstance(zone, str) and zone else "UTC",
        },
    )


async def get_dry_runner(request: Request) -> DryRunner:
    return cast(DryRunner, request.app.state.dry_runner)


DryRunnerDep = Annotated[DryRunner, Depends(get_dry_runner)]
