"""Which partition a device's records live on: Kafka's default partitioner, computed here.

Faust, aiokafka and the Java client place a keyed record on ``murmur2(key) & 0x7fffffff mod N``.
librdkafka's default (``consistent_random``) uses CRC32 instead and would put most devices on
another partition than the Faust tables expect, so the edges never leave the choice to the
producer: they compute the partition here and produce each envelope to it explicitly.
"""

from __future__ import annotations

from aiokafka.partitioner import murmur2

_CACHE_LIMIT = 200_000
_cache: dict[tuple[str, int], int] = {}


def partition_for(device_id: str, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record keyed by ``device_id``."""
    cached = _cache.get((device_id, partitions))
    if cached is not None:
        return cached
    partition = int(murmur2(device_id.encode()) & 0x7FFFFFFF) % partitions
    if len(_cache) >= _CACHE_LIMIT:  # a bound, not an LRU: fleets are smaller than this
        _cache.clear()
    _cache[(device_id, partitions)] = partition
    return partition
