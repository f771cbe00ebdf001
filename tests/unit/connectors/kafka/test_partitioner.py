"""The edges' partition choice must be Kafka's default partitioner, byte for byte."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from connectors.kafka.partitioner import partition_for


@pytest.mark.parametrize(
    ("key", "java_murmur2"),
    [  # org.apache.kafka.common.utils.UtilsTest#testMurmur2
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_partition_matches_the_java_clients_murmur2(key: str, java_murmur2: int) -> None:
    for partitions in (1, 3, 8, 12, 100):
        assert partition_for(key, partitions) == (java_murmur2 & 0x7FFFFFFF) % partitions


def test_partition_matches_faust_and_aiokafka_for_a_fleet() -> None:
    partitioner = DefaultPartitioner()
    all_partitions = list(range(8))
    for n in range(1000):
        device = f"esp32-{n:04d}"
        expected = partitioner(device.encode(), all_partitions, all_partitions)
        assert partition_for(device, 8) == expected
