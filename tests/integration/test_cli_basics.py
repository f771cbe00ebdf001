"""What every ``fleetstream`` user meets first: ``--version``, shell completion, and a
destructive command that shows what it will touch and asks before it does it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from connectors.postgres.pool import connect
from schemas.envelopes import single_item_envelope
from schemas.events import DeadLetter, encode_dead_letter
from schemas.settings import Settings
from tests import clock
from tests.factories import raw_event, reading
from tests.integration.cli_tools import fleetstream, own_database_of
from tests.integration.kafka_tools import end_offsets, produce, raw_events, read_to_end
from tests.integration.processes import PROJECT_ROOT

SCRIPT = Path(sys.executable).parent / "fleetstream"


def test_version_and_shell_completion(pipeline: Settings) -> None:
    shown = fleetstream(pipeline, "--version")
    assert shown.stdout == f"fleetstream {version('fleetstream')}\n"

    def installed(*args: str, **env: str) -> str:
        """The console script users install (completion is keyed to its name)."""
        result = subprocess.run(  # noqa: S603 - our own CLI
            [str(SCRIPT), *args],
            cwd=PROJECT_ROOT,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return result.stdout

    script = installed("--show-completion", "bash")
    assert "_fleetstream_completion" in script and "complete " in script

    def complete(words: str) -> list[str]:
        """What bash completion offers for ``words`` (the protocol the script above speaks)."""
        offered = installed(
            _FLEETSTREAM_COMPLETE="complete_bash",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split()) - 1),
        )
        return offered.split()

    assert complete("fleetstream ta") == ["tail"]
    assert complete("fleetstream topics de") == ["describe"]


def _letter(n: int) -> tuple[bytes, bytes]:
    """A dead letter whose reading can be replayed."""
    device_id = f"esp32-{n:03d}"
    letter = DeadLetter(
        stage="validate",
        reason=f"letter {n}",
        error_type="ValidationFailure",
        source_topic="fleet.raw.v1",
        partition=0,
        offset=n,
        key=device_id,
        original=single_item_envelope(raw_event(reading(device_id, n))),
        failed_at=clock.now(),
    )
    return device_id.encode(), encode_dead_letter(letter)


def test_replaying_every_dead_letter_shows_the_count_and_asks_first(pipeline: Settings) -> None:
    bootstrap = pipeline.kafka.bootstrap_servers
    produce(bootstrap, pipeline.topics.deadletter, [_letter(n) for n in range(7)])

    raw, partitions = pipeline.topics.raw, pipeline.kafka.partitions

    declined = fleetstream(pipeline, "deadletters", "replay", code=1)  # no answer on stdin
    assert f"replay all 7 dead letters (no filter) onto {raw}" in declined.stderr
    assert f"{pipeline.topics.deadletter} partition" in declined.stderr
    said_no = fleetstream(pipeline, "deadletters", "replay", input_text="n\n", code=1)
    assert "Aborted" in said_no.stderr
    assert end_offsets(bootstrap, raw, partitions) == 0  # nothing replayed

    filtered = fleetstream(pipeline, "deadletters", "replay", "--device", "esp32-003", "--json")
    assert json.loads(filtered.stdout)["readings"] == 1  # a filter: nothing asked
    done = fleetstream(pipeline, "deadletters", "replay", "--yes", "--json")
    report = json.loads(done.stdout)
    assert report["letters"] == report["readings"] == 7 and report["skipped"] == {}
    assert "dead letters read: 7 letters" in done.stderr
    replayed = [event for record in read_to_end(bootstrap, raw) for event in raw_events(record)]
    assert sorted(event.device_id for event in replayed) == sorted(
        [f"esp32-{n:03d}" for n in range(7)] + ["esp32-003"]
    )


async def _revision(settings: Settings) -> str | None:
    conn = await connect(settings.postgres)
    try:
        if await conn.fetchval("SELECT to_regclass('alembic_version')") is None:
            return None
        return await conn.fetchval("SELECT version_num FROM alembic_version")  # type: ignore[no-any-return]
    finally:
        await conn.close()


def test_a_database_downgrade_says_what_it_drops_and_asks_first(pipeline: Settings) -> None:
    with own_database_of(pipeline) as settings:
        head = asyncio.run(_revision(settings))
        assert head is not None
        declined = fleetstream(settings, "db", "downgrade", "base", code=1)
        assert f"database {settings.postgres.database} on" in declined.stderr
        assert asyncio.run(_revision(settings)) == head
        fleetstream(settings, "db", "downgrade", "base", "--yes")
        assert asyncio.run(_revision(settings)) is None
