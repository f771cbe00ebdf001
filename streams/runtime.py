"""Process-wide tuning shared by the long-running commands (api, worker, mqtt)."""

from __future__ import annotations

import gc


def tune_gc(gen0_threshold: int) -> bool:
    """Collect garbage less often in a process that allocates per reading.

    CPython runs a generation-0 collection every 700 new container objects (dicts, lists,
    structs with dict fields). A batch of a few thousand decoded readings allocates far more
    than that, so the collector ran many times per batch and each run walked every reading
    still alive in the batch. In the pipeline benchmark (1M readings, one worker) the worker
    took 120 µs of CPU a reading with Python's default, 109 µs with 50,000 and 64 µs with
    1,000,000 (``bench/RESULTS.md``). 1,000,000 is not the default yet: a two-worker run with
    it stalled once (one worker hung in shutdown), which is not understood; cyclic garbage
    that holds a resource until it is collected would explain it.

    ``gc.freeze()`` moves what start-up allocated (Faust, modules, settings) out of the
    collector's sight for good; a higher generation-0 threshold lets a batch finish between
    collections. Reference counting still frees almost
    everything at once; only cycles wait a little longer. 0 keeps Python's defaults.

    Returns whether anything was changed.
    """
    if gen0_threshold <= 0:
        return False
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    return True
