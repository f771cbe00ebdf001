"""The dry run of a flow on one reading, and the process the API has them evaluated in.

:func:`answer` runs a flow version on a sample reading and says what it would do: whether the
flow matches, its trace node by node, the calls it would make (listed, never made) and what its
alert rule would decide from an idle state. Nothing is called, published or stored.

The API does not run it on its event loop, nor in a thread of its own process: the CEL package
holds the GIL for as long as an expression evaluates, so a slow one would stall every request.
It runs here instead, in an *evaluator*: ``python -m streams.flow_engine.dry_run``, a process
that answers requests on its stdin/stdout, one at a time, until its stdin closes. A process can
be killed, so a dry run that takes too long is stopped (``api.dry_runs``: after
``FLEET_API__DRY_RUN_TIMEOUT_S``).

Frames are a 4-byte big-endian length and that many bytes of JSON: a :class:`DryRun` in, a
:class:`Reply` out. The evaluator writes ``READY`` (one frame) once it has imported what it
runs, so the time it takes to start (~1 s here, mostly importing the CEL package) is not
counted as the flow's.
"""

from __future__ import annotations

import os
import struct
import sys
from datetime import datetime
from typing import Any, BinaryIO, Final

import msgspec

from schemas.errors import FieldError
from schemas.flows import FlowDocument
from streams.flow_engine import alerts
from streams.flow_engine.catalog import FlowSet
from streams.flow_engine.engine import CompiledFlow, ReadingView
from streams.flow_engine.expressions import CompileError

HEADER: Final = struct.Struct(">I")
READY: Final = b"ready"


class Sample(msgspec.Struct, frozen=True, kw_only=True):
    """A reading as its flows see it: what a :class:`ReadingView` is made of."""

    event_id: str
    device_id: str
    ts: datetime
    sensors: dict[str, Any]
    metadata: dict[str, Any] | None
    device: dict[str, Any]
    """``id``, ``name``, ``profile``, ``tags``, ``location``, ``timezone``."""

    def view(self) -> ReadingView:
        return ReadingView(
            event_id=self.event_id,
            device_id=self.device_id,
            ts=self.ts,
            sensors=self.sensors,
            metadata=self.metadata,
            device=self.device,
        )


class DryRun(msgspec.Struct, frozen=True, kw_only=True):
    document: FlowDocument
    sample: Sample
    now: datetime
    """When the dry run was asked for (an alert's ``fires_from_idle`` is judged at it)."""


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """One of: the ``answer``; the ``errors`` of a stored version that no longer compiles (it
    was stored before a limit was tightened); a ``failure`` (a bug: the message)."""

    answer: dict[str, Any] | None = None
    errors: list[FieldError] | None = None
    failure: str | None = None


def answer(run: DryRun) -> dict[str, Any]:
    """What ``run.document`` does with ``run.sample``; raises :class:`CompileError` when the
    stored version does not compile."""
    document, sample = run.document, run.sample
    flow = CompiledFlow(document)
    tags = sample.device.get("tags") or []
    mine = FlowSet.of([flow]).for_device(sample.device_id, tags, sample.device.get("profile"))
    matched = bool(FlowSet.for_reading(mine, sample.sensors))
    result = flow.run(sample.view())
    shown: dict[str, Any] = {
        "flow_id": flow.flow_id,
        "version": flow.version,
        "enabled": document.enabled,
        "matches": matched,
        "completed": result.completed,
        "error": None if result.error is None else str(result.error),
        "trace": [
            {"node": step.node_id, "type": step.type, "outcome": step.outcome, **step.detail}
            for step in result.trace
        ],
        "outbound": [call.describe() for call in result.outbound],
        "fields": result.fields,
        "alert": None,
    }
    if result.alert is not None and flow.alert is not None:
        signal = result.alert
        rule = alerts.Rule(flow.flow_id, flow.version, flow.name, flow.alert)
        reading = alerts.Reading(sample.device_id, sample.event_id, sample.ts)
        event = alerts.step(alerts.RuleState(), rule, reading, signal, run.now)
        shown["alert"] = {
            "condition": signal.condition,
            "clear": signal.clear,
            "value": signal.value,
            "in_schedule": signal.in_schedule,
            "message": signal.message,
            "severity": flow.alert.severity,
            "for_s": flow.alert.for_s,
            "fires_from_idle": event is not None,
        }
    return shown


_decode = msgspec.json.Decoder(DryRun).decode
_encode = msgspec.json.Encoder().encode


def reply_to(frame: bytes) -> Reply:
    """The reply to one request frame."""
    try:
        return Reply(answer=answer(_decode(frame)))
    except CompileError as exc:
        return Reply(errors=[exc.error])
    except Exception as exc:  # noqa: BLE001 - told to the API, which answers 500
        return Reply(failure=f"{type(exc).__name__}: {exc}")


def serve(requests: BinaryIO, replies: BinaryIO) -> None:
    """Answer frames from ``requests`` until it ends."""
    write(replies, READY)
    while True:
        header = requests.read(HEADER.size)
        if len(header) < HEADER.size:
            return
        frame = requests.read(HEADER.unpack(header)[0])
        reply = reply_to(frame)
        try:
            encoded = _encode(reply)
        except (TypeError, ValueError) as exc:  # a value JSON cannot hold
            encoded = _encode(Reply(failure=f"the answer cannot be sent: {exc}"))
        write(replies, encoded)


def write(stream: BinaryIO, frame: bytes) -> None:
    stream.write(HEADER.pack(len(frame)) + frame)
    stream.flush()


def main() -> None:
    """The evaluator: frames on fds 0 and 1. Anything else that writes to stdout (a library's
    print) goes to stderr instead, so it cannot corrupt a frame."""
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    serve(sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
