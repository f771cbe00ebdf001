"""Bulk registration bodies, answers and the token file."""

from __future__ import annotations

import stat
from pathlib import Path

from cli.simulator.payloads import device_token
from cli.simulator.registration import (
    import_bodies,
    load_tokens,
    save_tokens,
    state_file,
    tokens_from_answer,
)


def test_bodies_take_at_most_ten_thousand_devices_with_seeded_tokens() -> None:
    ids = [f"sim-1-{n:07d}" for n in range(25_001)]
    bodies = import_bodies(1, ids)
    sizes = [len(body["devices"]) for body in bodies]  # type: ignore[arg-type]
    assert sizes == [10_000, 10_000, 5_001]
    first = bodies[0]["devices"][0]  # type: ignore[index]
    assert first["device_id"] == ids[0]
    assert first["token_plain"] == device_token(1, ids[0])
    sent = [d["device_id"] for body in bodies for d in body["devices"]]  # type: ignore[attr-defined]
    assert sent == ids


def test_created_devices_keep_the_answered_token_existing_ones_the_seeded_one() -> None:
    answer = {"created": [{"device_id": "a", "token": "server-chosen-token-0001"}],
              "existing": ["b"]}  # fmt: skip
    assert tokens_from_answer(5, answer) == {
        "a": "server-chosen-token-0001",
        "b": device_token(5, "b"),
    }


def test_tokens_are_kept_for_the_owner_only_and_merged(tmp_path: Path) -> None:
    path = state_file(tmp_path / "state", seed=3, prefix="sim")
    save_tokens(path, {"a": "t1"})
    path.chmod(0o644)  # a looser file from elsewhere is tightened on the next save
    save_tokens(path, {"b": "t2"})
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_tokens(path) == {"a": "t1", "b": "t2"}
    assert load_tokens(tmp_path / "none.json") == {}
