"""Process-wide tuning shared by the long-running commands (api, worker, mqtt)."""

from __future__ import annotations

import gc


def tune_gc(gen0_threshold: int) -> bool:
    """Collect garbage less often in a process that allocates per reading; returns whether
    anything changed (``gen0_threshold`` 0 keeps Python's defaults).

    CPython collects generation 0 every 700 new container objects, and each collection walks
    every reading still alive in the batch: a batch allocates far more than 700, so the
    threshold must be large beside a batch's objects (docs/decisions.md, decision 25).
    ``gc.freeze()`` moves what start-up allocated (Faust, modules, settings) out of the
    collector's sight for good. Reference counting still frees almost everything at once; only
    cycles wait longer.
    """
    if gen0_threshold <= 0:
        return False
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    return True
