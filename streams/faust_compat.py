"""The one place that uses a private Faust API (faust-streaming pinned to 0.15.3).

A Table write needs "the current event": Faust sends the changelog record to that event's
partition. Inside ``noack_take`` there is none (Faust sets it per message in ``async for``), so
``table[key] = value`` raises "Cannot modify table key from outside of stream iteration"; the
agent would crash-loop. Agents that write tables per batch set the event whose partition holds
the key (envelopes are partition-aligned, so any event of that partition will do) with
:func:`writing_as`. If a Faust upgrade changes the private name, ``tests/unit/
test_streams_faust_compat.py`` fails first.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from faust import streams as _faust_streams

_current_event = _faust_streams._current_event


@contextmanager
def writing_as(event: Any) -> Iterator[None]:
    """Table writes inside the block go to ``event``'s partition of the changelog."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
