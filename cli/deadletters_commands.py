"""``fleetstream deadletters``: look at the dead-letter topic and replay what can be replayed.

``list`` reads ``fleet.deadletter.v1`` from the beginning to its current end (no consumer
group, nothing committed) and prints the letters matching the filters, as a table or JSON.

``replay`` puts the readings of the matching letters back on ``fleet.raw.v1`` (as envelopes on
their device's partition, acked with ``acks=all``), so the validate agent reads them again —
after the operator fixed what was wrong (registered the device, changed a policy, extended the
catalogue). Every replayed reading carries ``replayed`` + 1; a reading already replayed
``FLEET_STREAM__MAX_REPLAYS`` times is not replayed (and the validate agent dead-letters one
that was), so a replay loop cannot happen. ``--dry-run`` shows what would be replayed.
Without any filter every letter is replayed: the command first says how many the topic holds
and asks (``--yes`` does not ask). Replayed readings keep their event ids: the sinks store each
once.
"""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import typer

from cli.console import confirm, say
from cli.progress import activity
from cli.runner import operator_errors
from connectors.kafka import deadletters as dlq
from connectors.kafka.deadletters import replayable
from connectors.kafka.inspection import Inspector
from schemas.events import DeadLetter, RawEvent
from schemas.settings import Settings, get_settings

deadletters_app = typer.Typer(no_args_is_help=True, help="The dead-letter topic: list, replay.")

DeviceOpt = Annotated[str | None, typer.Option("--device", help="only this device_id")]
StageOpt = Annotated[str | None, typer.Option(help="only this stage, e.g. validate")]
ReasonOpt = Annotated[str | None, typer.Option(help="only reasons containing this text")]
SinceOpt = Annotated[datetime | None, typer.Option(help="failed at or after (ISO 8601)")]
UntilOpt = Annotated[datetime | None, typer.Option(help="failed before (ISO 8601)")]


@dataclass(frozen=True)
class Filters:
    device: str | None = None
    stage: str | None = None
    reason: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def match(self, letter: DeadLetter) -> bool:
        failed = letter.failed_at
        return (
            (self.device is None or letter.key == self.device)
            and (self.stage is None or letter.stage == self.stage)
            and (self.reason is None or self.reason.lower() in letter.reason.lower())
            and (self.since is None or failed >= _aware(self.since))
            and (self.until is None or failed < _aware(self.until))
        )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def read_letters(settings: Settings) -> Iterator[DeadLetter]:
    """Every dead letter now on the topic, however many (undecodable records are skipped)."""
    return dlq.read_letters(settings.kafka.bootstrap_servers, settings.topics.deadletter)


def produce_replays(settings: Settings, events: list[RawEvent]) -> int:
    """Put ``events`` on the raw topic as envelopes on their partitions; return the records."""
    kafka = settings.kafka
    return dlq.produce_replays(
        kafka.bootstrap_servers,
        settings.topics.raw,
        events,
        envelope_max_items=kafka.envelope_max_items,
        envelope_max_bytes=kafka.envelope_max_bytes,
    )


@deadletters_app.command("list")
def list_letters(
    device: DeviceOpt = None,
    stage: StageOpt = None,
    reason: ReasonOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many (the newest)")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON lines")] = False,
) -> None:
    """Show dead letters (newest last), filtered."""
    settings = get_settings()
    filters = Filters(device, stage, reason, since, until)
    matching = 0

    def counted(letters: Iterator[DeadLetter]) -> Iterator[DeadLetter]:
        nonlocal matching
        for letter in letters:
            if filters.match(letter):
                matching += 1
                yield letter

    with operator_errors():  # only the newest `limit` are held, however many there are
        newest = heapq.nlargest(limit, counted(read_letters(settings)), key=_failed_at)
    shown = newest[::-1]
    for letter in shown:
        if as_json:
            typer.echo(msgspec.json.encode(_summary(letter)).decode())
        else:
            typer.echo(
                f"{letter.failed_at.isoformat()}  {letter.stage:<14} {letter.key or '-':<24} "
                f"{letter.event_id or '-':<36}  {letter.reason}"
            )
    if not as_json:
        typer.echo(f"{len(shown)} of {matching} matching dead letters")


def _failed_at(letter: DeadLetter) -> datetime:
    return letter.failed_at


def _summary(letter: DeadLetter) -> dict[str, Any]:
    return {
        "failed_at": letter.failed_at,
        "stage": letter.stage,
        "device_id": letter.key,
        "event_id": letter.event_id,
        "reason": letter.reason,
        "errors": [
            {"loc": list(e.loc), "message": e.message, "type": e.type} for e in letter.errors
        ],
        "error_type": letter.error_type,
        "source": f"{letter.source_topic}/{letter.partition}/{letter.offset}",
        "item": letter.item,
        "original_bytes": len(letter.original),
    }


REPLAY_CHUNK = 5_000
"""Readings produced (and acked) at a time by ``replay``."""


def _replay_chunk(
    settings: Settings, events: list[RawEvent], dry_run: bool, readings: int, records: int
) -> tuple[int, int]:
    """Produce ``events`` (unless a dry run) and empty the list; the running totals after."""
    produced = 0 if dry_run or not events else produce_replays(settings, events)
    totals = readings + len(events), records + produced
    events.clear()
    return totals


@deadletters_app.command("replay")
def replay(
    device: DeviceOpt = None,
    stage: StageOpt = None,
    reason: ReasonOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show, do not produce")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="replay all without asking")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print a JSON report")] = False,
) -> None:
    """Put the readings of the matching dead letters back on the raw topic (without a filter:
    every letter, after showing how many and asking, unless --yes)."""
    settings = get_settings()
    filters = Filters(device, stage, reason, since, until)
    if filters == Filters() and not dry_run:
        _confirm_all(settings, yes)
    events: list[RawEvent] = []
    skipped: dict[str, int] = defaultdict(int)
    letters = readings = records = 0
    with operator_errors(), activity("reading dead letters", unit="letters") as shown:
        for letter in read_letters(settings):
            shown.advance()
            if not filters.match(letter):
                continue
            letters += 1
            found, why = replayable(letter, settings.stream.max_replays)
            if why is not None:
                skipped[why] += 1
            events += found
            if len(events) >= REPLAY_CHUNK:  # memory stays bounded however many letters match
                readings, records = _replay_chunk(settings, events, dry_run, readings, records)
                shown.describe(f"{readings:,} readings replayed")
        readings, records = _replay_chunk(settings, events, dry_run, readings, records)
        say(shown.summary("dead letters read"))
    report = {
        "letters": letters,
        "readings": readings,
        "records": records,
        "dry_run": dry_run,
        "skipped": dict(skipped),
    }
    if as_json:
        typer.echo(json.dumps(report))
        return
    verb = "would replay" if dry_run else "replayed"
    typer.echo(f"{verb} {readings} readings from {letters} matching dead letters")
    for why, count in skipped.items():
        typer.echo(f"  skipped {count}: {why}")


def _confirm_all(settings: Settings, yes: bool) -> None:
    """No filter replays every letter: say how many the topic holds, and ask."""
    topic = settings.topics.deadletter
    with operator_errors():
        [state] = Inspector(settings.kafka.bootstrap_servers).topics([topic], configs=False)
    touched = [
        f"{topic} partition {p.partition}: {p.records:,} letters (offsets {p.start}-{p.end})"
        for p in state.partitions
        if p.records
    ]
    confirm(
        f"replay all {state.records:,} dead letters (no filter) onto {settings.topics.raw}",
        touched,
        yes=yes,
    )
