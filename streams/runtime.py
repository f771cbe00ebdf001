"""Process-wide tuning shared by the long-running commands (api, worker, mqtt)."""

from __future__ import annotations

import gc


def tune_gc(gen0_threshold: int) -> bool:
    """Collect garbage less often in a process that allocates per reading.

    CPython runs a generation-0 collection every 700 new container objects (dicts, lists,
    structs with dict fields). A batch of a few thousand decoded readings allocates far more
    than that, so the collector ran many times per batch and each run walked every reading
    still alive in the batch. In the pipeline benchmark (1M readings, one worker) the worker
    took 120 µs of CPU a reading with Python's default and 109 µs with 50,000; 64 µs with
    1,000,000 on the same code, and 65 µs with 200,000 on the next commits
    (``bench/RESULTS.md``): the live heap holds whole batches, so the threshold must be large
    beside a batch's objects. 200,000 is the default: as good as 1,000,000 here, and cyclic
    garbage waits five times less.

    ``gc.freeze()`` moves what start-up allocated (Faust, modules, settings) out of the
    collector's sight for good; a higher generation-0 threshold lets a batch finish between
    collections. Reference counting still frees almost everything at once; only cycles wait a
    little longer. 0 keeps Python's defaults.

    Returns whether anything was changed.
    """
    if gen0_threshold <= 0:
        return False
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0_threshold, gen1, gen2)
    return True
