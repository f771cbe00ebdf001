"""The one rule for who acknowledges an alert (the API route and the operator page share it)."""

from __future__ import annotations

import pytest

from connectors.postgres.alerts import (
    ACKNOWLEDGER_MAX_LENGTH,
    AlertStore,
    InvalidAcknowledger,
    check_acknowledger,
)


@pytest.mark.parametrize("by", ["ops", "Jane Doe", "x" * ACKNOWLEDGER_MAX_LENGTH, "Jürgen 🙂"])
def test_a_name_of_1_to_128_characters_without_control_characters_is_taken(by: str) -> None:
    assert check_acknowledger(by) == by


@pytest.mark.parametrize("by", ["", "x" * (ACKNOWLEDGER_MAX_LENGTH + 1), "a\nb", "ops\n", "\x7f"])
def test_anything_else_is_refused(by: str) -> None:
    with pytest.raises(InvalidAcknowledger, match="no control characters"):
        check_acknowledger(by)


async def test_the_store_refuses_it_before_asking_postgres() -> None:
    store = AlertStore(pool=None)  # never reached
    with pytest.raises(InvalidAcknowledger):
        await store.acknowledge("0b7e6a2c-3f1d-4c1a-9d6e-1f2a3b4c5d6e", "")
