"""Operator views without a worker: sessions, rates, the dead-letter index, the status scan."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from connectors.kafka.partitioner import partition_for
from schemas.envelopes import encode_item, raw_envelope
from schemas.events import DeadLetter
from schemas.status import DeviceState, encode
from streams.web import auth
from streams.web.device_pages import DeviceFilter
from streams.web.devices import scan
from streams.web.lag import PartitionLag, in_app
from streams.web.letters import LetterFilter, LetterIndex, LetterView, preview, summarize
from streams.web.rates import RateWindow
from tests.factories import raw_event

TOKEN = "a-long-admin-token-for-tests"  # noqa: S105 - a test value
NOW = 1_800_000_000.0


def test_a_session_cookie_is_valid_until_it_expires_and_only_for_its_token() -> None:
    value = auth.session_value(TOKEN, NOW)
    assert auth.session_valid(value, TOKEN, NOW + 60)
    assert not auth.session_valid(value, TOKEN, NOW + auth.SESSION_TTL_S + 1)
    assert not auth.session_valid(value, "another-token", NOW)  # a rotated token ends sessions
    expires, _, mac = value.partition(".")
    forged = f"{int(expires) + 3600}.{mac}"  # a longer life needs a new MAC
    assert not auth.session_valid(forged, TOKEN, NOW)
    assert not auth.session_valid("garbage", TOKEN, NOW)
    assert not auth.session_valid(auth.session_value("", NOW), "", NOW)  # no token, no session


def test_tokens_compare_exactly_and_never_match_an_empty_one() -> None:
    assert auth.token_matches(TOKEN, TOKEN)
    assert not auth.token_matches(TOKEN + "x", TOKEN)
    assert not auth.token_matches("", "")
    assert auth.bearer_token({"Authorization": f"Bearer {TOKEN}"}) == TOKEN
    assert auth.bearer_token({"Authorization": f"Basic {TOKEN}"}) is None
    assert auth.bearer_token({}) is None


def test_after_login_the_browser_goes_only_to_a_path_of_this_server() -> None:
    assert auth.safe_next("/ops/devices?q=esp") == "/ops/devices?q=esp"
    for hostile in ("https://evil.example/", "//evil.example/", "/\\evil.example", "", None):
        assert auth.safe_next(hostile) == "/ops/"


def test_rates_are_differences_over_the_window() -> None:
    window: RateWindow[str] = RateWindow(window_s=10)
    assert window.rates() == {}
    window.sample(0.0, {"a": 0})
    window.sample(2.0, {"a": 10, "b": 4})
    assert window.rates() == {"a": 5.0, "b": 2.0}  # shortly after a start: since the first
    for t in range(4, 22, 2):
        window.sample(float(t), {"a": 10 + 3 * t, "b": 4})
    # newest at 20 s; the base is the newest sample at least 10 s older (10 s)
    assert window.rates() == {"a": 3.0, "b": 0.0}


def letter(stage: str, failed_at: datetime, original: bytes, key: str = "dev-1") -> DeadLetter:
    return DeadLetter(
        stage=stage,
        reason="bad",
        error_type="ValidationFailure",
        source_topic="raw",
        partition=0,
        offset=1,
        key=key,
        original=original,
        failed_at=failed_at,
    )


def test_the_index_keeps_the_newest_letters_and_counts_stages_of_the_last_hour() -> None:
    now = datetime.fromtimestamp(NOW, UTC)
    index = LetterIndex(keep=3)
    old = now - timedelta(minutes=90)
    index.add(summarize(letter("validate", old, b"x"), 0, 0))
    for n, stage in enumerate(["validate", "sink.postgres", "validate", "flow.gas"]):
        index.add(summarize(letter(stage, now - timedelta(minutes=n), b"x", f"d{n}"), 1, n))
    assert index.per_stage(NOW) == {"validate": 2, "sink.postgres": 1, "flow.gas": 1}
    newest = index.latest(10)
    assert [(v.partition, v.offset) for v in newest] == [(1, 1), (1, 2), (1, 3)]  # keep=3
    assert [v.offset for v in index.latest(10, stage="validate")] == [2]
    assert [v.offset for v in index.latest(10, device_id="d1")] == [1]


def test_a_preview_shows_the_reading_as_sent_or_the_bytes_as_they_are() -> None:
    now = datetime.fromtimestamp(NOW, UTC)
    body = {"device_id": "dev-1", "sensors": {"pir": {"motion_detected": True}}}
    envelope = raw_envelope([encode_item(raw_event(body))])
    shown, replayed = preview(letter("validate", now, envelope))
    assert msgspec.json.decode(shown) == body and replayed == 0
    assert preview(letter("x", now, b'{"a": [1, 2]}')) == ('{"a":[1,2]}', 0)
    assert preview(letter("x", now, b"plain text")) == ("plain text", 0)
    assert preview(letter("x", now, b"\xff\x00\x01")) == ("hex ff0001", 0)
    long_text, _ = preview(letter("x", now, b"y" * 5000))
    assert len(long_text) == 600 and long_text.endswith("…")


def state(device_id: str, online: bool) -> bytes:
    now = datetime.fromtimestamp(NOW, UTC)
    return encode(
        DeviceState(
            device_id=device_id,
            first_seen=now,
            last_seen=now,
            last_ts=now,
            last_event_id="e",
            count=1,
            online=online,
        )
    )


def test_the_status_scan_counts_only_this_workers_partitions() -> None:
    devices = [f"scan-{n}" for n in range(40)]
    mine = frozenset({0, 2})
    items = [(d.encode(), state(d, online=n % 3 != 0)) for n, d in enumerate(devices)]
    found = scan(items, 4, mine, DeviceFilter(search="SCAN-1"), {})
    owned = [(n, d) for n, d in enumerate(devices) if partition_for(d, 4) in mine]
    assert found.online == sum(1 for n, _ in owned if n % 3 != 0)
    assert found.offline == sum(1 for n, _ in owned if n % 3 == 0)
    assert {m["device_id"] for m in found.matches} == {d for _, d in owned if "scan-1" in d}
    assert scan(items, 4, mine, None, {}).matches == []
    limited = scan(items, 4, mine, DeviceFilter(limit=2), {})
    assert [m["device_id"] for m in limited.matches] == sorted(d for _, d in owned)[:2]
    assert limited.more


def test_lag_counts_from_the_first_offset_when_nothing_was_committed() -> None:
    def lag_of(committed: int | None, start: int, end: int) -> int:
        return PartitionLag("g", "t", 0, committed, start, end).lag

    assert lag_of(40, 0, 47) == 7
    assert lag_of(None, 10, 47) == 37
    assert lag_of(5, 10, 47) == 37  # retention deleted past the commit
    assert lag_of(50, 0, 47) == 0
    assert in_app("fleet", "fleet") and in_app("fleet.sink-redis", "fleet")
    assert not in_app("fleetstream", "fleet") and not in_app("other.fleet", "fleet")


def test_a_letter_filter_admits_only_what_every_field_allows() -> None:
    noon = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def view(offset: int, stage: str, device: str, reason: str, minutes: int) -> LetterView:
        return LetterView(
            partition=0,
            offset=offset,
            failed_at=noon + timedelta(minutes=minutes),
            stage=stage,
            reason=reason,
            device_id=device,
            event_id=None,
            errors=[],
            error_type="",
            source="raw/0/0",
            item=None,
            original_bytes=1,
            original_truncated=False,
            preview="",
            replayed=0,
        )

    index = LetterIndex()
    for letter in (
        view(1, "validate", "esp-1", "device is disabled", 0),
        view(2, "validate", "esp-2", "device is disabled", 5),
        view(3, "sink.postgres", "esp-1", "value out of range", 10),
        view(4, "validate", "esp-1", "unknown sensor", 20),
    ):
        index.add(letter)

    def offsets(wanted: LetterFilter) -> list[int]:
        return [letter.offset for letter in index.matching(wanted)]

    assert offsets(LetterFilter()) == [4, 3, 2, 1]
    assert offsets(LetterFilter(stage="validate", device_id="esp-1")) == [4, 1]
    assert offsets(LetterFilter(reason="DISABLED")) == [2, 1]
    window = LetterFilter(since=noon + timedelta(minutes=5), until=noon + timedelta(minutes=20))
    assert offsets(window) == [3, 2]
