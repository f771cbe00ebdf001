"""Unit tests run on the frozen test clock: see :mod:`tests.clock`."""

from tests.clock import CLOCK

CLOCK.freeze()
