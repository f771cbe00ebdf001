"""The maintenance timer's pass: which days, and a Postgres outage is only logged."""

from __future__ import annotations

from datetime import date

import pytest

from agents.maintenance import PartitionKeeper
from connectors.postgres.readings import ensure_day_partitions, partition_window
from schemas.settings import Settings
from tests.support import free_port


def test_the_window_is_yesterday_to_the_days_ahead() -> None:
    assert partition_window(date(2026, 12, 31), 7) == (date(2026, 12, 30), date(2027, 1, 7))


async def test_too_many_days_at_once_are_refused_before_touching_postgres() -> None:
    with pytest.raises(ValueError, match="at most"):
        await ensure_day_partitions(None, date(2020, 1, 1), date(2026, 1, 1))
    assert await ensure_day_partitions(None, date(2026, 1, 2), date(2026, 1, 1)) == []


async def test_postgres_unreachable_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    base = Settings()
    settings = base.model_copy(
        update={"postgres": base.postgres.model_copy(update={"port": free_port()})}
    )
    keeper = PartitionKeeper(settings)
    assert await keeper.run(date(2026, 11, 28)) == []
    assert "could not create the readings partitions 2026-11-27..2026-12-05" in caplog.text
    await keeper.close()
