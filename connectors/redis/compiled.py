"""The Redis sink's merge in the compiled core (``native/``, ``fleetstream_native.RedisMerge``).

The reference is ``agents.redis_sink.merge`` with ``RedisWriter.commands`` and
``connectors.redis.wire.pack``: per device of a batch of curated envelopes, its latest and status
hashes and its channel's message, then the all-devices channel. That is ~20 µs of Python per
device and batch, and at 100,000 devices each batch holds one reading per device, so it is a
per-reading cost that grows with the fleet. The compiled merge writes the same commands, byte for
byte (a property test holds them together), or gives the batch back to the reference
(``None``) when anything in it would be read another way or dead-lettered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from schemas.envelopes import CURATED_PREFIX

if TYPE_CHECKING:
    from fleetstream_native import RedisMerge


class MergeUnavailable(RuntimeError):
    """The compiled core (native/) is not installed."""


@dataclass(frozen=True, slots=True)
class Packed:
    """A batch's device commands, packed for the wire."""

    data: bytes
    commands: int
    devices: int


class CompiledMerge:
    """The merge for keys under ``prefix`` (``FLEET_REDIS__PREFIX``)."""

    def __init__(self, prefix: str) -> None:
        try:
            from fleetstream_native import RedisMerge  # built by `make venv` (native/)
        except ImportError as exc:
            raise MergeUnavailable("the compiled core (native/) is not installed") from exc
        self._native: RedisMerge = RedisMerge(envelope_prefix=CURATED_PREFIX, key_prefix=prefix)

    def merge(self, values: Sequence[bytes | None]) -> Packed | None:
        """The packed device commands of these curated envelopes, or None: the reference's."""
        merged = self._native.merge(values)
        return None if merged is None else Packed(*merged)
