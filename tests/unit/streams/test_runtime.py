from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.runtime import tune_gc


@pytest.fixture(autouse=True)
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tune_gc_raises_the_generation_0_threshold_and_freezes_start_up_objects() -> None:
    _, gen1, gen2 = gc.get_threshold()

    assert tune_gc(50_000)

    assert gc.get_threshold() == (50_000, gen1, gen2)
    assert gc.get_freeze_count() > 0


def test_tune_gc_zero_keeps_python_defaults() -> None:
    before = gc.get_threshold()

    assert not tune_gc(0)

    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
