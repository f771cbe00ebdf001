"""bench.secure: the request bodies with their devices' tokens, and the block's medians and
ratios (pure; nothing is started)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec

from bench.data import new_fleet
from bench.secure import BATCH, BODIES_PER_DEVICE, Round, report, write_bodies
from bench.stats import Result

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def test_every_body_holds_readings_of_the_device_whose_token_it_carries(tmp_path: Path) -> None:
    fleet = new_fleet(7)
    tokens = {device: f"token-of-{device}" for device in fleet.devices}
    path = tmp_path / "bodies.tsv"
    write_bodies(path, fleet, tokens, NOW)
    lines = path.read_bytes().splitlines()
    assert len(lines) == len(fleet.devices) * BODIES_PER_DEVICE
    sent: dict[str, int] = {}
    for line in lines:
        token, _, body = line.partition(b"\t")
        items = msgspec.json.decode(body)
        assert 0 < len(items) <= BATCH
        (device,) = {item["device_id"] for item in items}
        assert token.decode() == tokens[device]
        sent[device] = sent.get(device, 0) + len(items)
    assert sent == dict.fromkeys(fleet.devices, BATCH * BODIES_PER_DEVICE)


def _round(mode: str, rps: float, api_cpu_s: float, steady: float) -> Round:
    ingest = Result("secure", f"{mode}: ingest", 1_000_000, 10.0, cpu_s={"api": api_cpu_s})
    pipeline = Result("secure", f"{mode}: pipeline", 500_000, 30.0, steady_rate=steady)
    return Round(mode, ingest, rps, pipeline)


def test_the_block_gives_the_median_of_each_mode_and_secure_over_plain() -> None:
    rounds = [
        _round("plain", 1000.0, 10.0, 20_000.0),
        _round("secure", 600.0, 15.0, 18_000.0),
        _round("secure", 800.0, 17.0, 16_000.0),
        _round("plain", 1200.0, 12.0, 22_000.0),
    ]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in report(rounds, 10)}
    # requests/s: medians 1,100 and 700.
    assert rows["ingest: requests/s answered 202"].endswith("| 1,100.0 | 700.0 | 0.64 |")
    # API CPU s per million readings: 11 and 16 seconds per million readings.
    assert rows["ingest: API CPU s per million readings"].endswith("| 11.0 | 16.0 | 1.45 |")
    assert rows["pipeline: readings/s to rows (steady)"].endswith("| 21,000.0 | 17,000.0 | 0.81 |")
