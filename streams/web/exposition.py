"""``/metrics`` of a worker: the agents' metrics (``streams.metrics``) and, per scrape, the sizes
of the tables this worker owns and the consumer lag of the app's groups.

Table sizes count the keys of this worker's active partitions (standby copies are another
worker's), so they add up across workers. Consumer lag is the broker's view of every partition
of every group of the app, the same on every worker: aggregate it with ``max``, not ``sum``.
Readiness (``fleet_worker_ready``) and devices per state (``fleet_devices``, from the newest
trend sample, :mod:`streams.web.trends`) are this worker's own: ``sum`` them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.partitioner import partition_for
from connectors.prometheus import render
from streams.metrics import METRICS
from streams.web.devices import table_ready
from streams.web.lag import PartitionLag

if TYPE_CHECKING:
    import faust

    from streams.web.cluster import Operator


class _Families(Collector):
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return iter(self._families)


def table_keys(app: faust.App) -> dict[str, int]:
    """Keys per table in this worker's active partitions (empty while not ready)."""
    if not table_ready(app):
        return {}
    actives = app.assignor.assigned_actives()
    sizes: dict[str, int] = {}
    for name, table in app.tables.items():
        topic = table.changelog_topic
        mine = {tp.partition for tp in actives if tp.topic == topic.get_topic_name()}
        partitions = topic.partitions or app.conf.topic_partitions
        keys: Iterable[bytes] = cast(Any, table).keys()
        sizes[name] = sum(
            1 for key in keys if partition_for(key.decode("utf-8", "replace"), partitions) in mine
        )
    return sizes


def scrape_families(
    tables: Mapping[str, int],
    lag: Iterable[PartitionLag] | None,
    ready: bool,
    devices: Mapping[str, int] | None,
) -> list[GaugeMetricFamily]:
    """The families read at each scrape: table sizes, consumer lag (``None``: Kafka did not
    answer), readiness, and this worker's devices per state (``None``: not counted yet)."""
    keys = GaugeMetricFamily(
        "fleet_table_keys", "keys of the table in this worker's active partitions", labels=["table"]
    )
    for name, size in tables.items():
        keys.add_metric([name], size)
    lag_family = GaugeMetricFamily(
        "fleet_consumer_lag",
        "end offset minus committed offset (same on every worker: use max)",
        labels=["group", "topic", "partition"],
    )
    for row in lag or ():
        lag_family.add_metric([row.group, row.topic, str(row.partition)], row.lag)
    up = GaugeMetricFamily("fleet_consumer_lag_up", "1 when the lag could be read from Kafka")
    up.add_metric([], 0 if lag is None else 1)
    ready_family = GaugeMetricFamily(
        "fleet_worker_ready", "1 when the worker has joined its group and recovered its tables"
    )
    ready_family.add_metric([], 1 if ready else 0)
    families = [keys, lag_family, up, ready_family]
    if devices is not None:
        counted = GaugeMetricFamily(
            "fleet_devices",
            "devices of this worker's partitions by state, counted every trend sample (sum)",
            labels=["state"],
        )
        for state, count in sorted(devices.items()):
            counted.add_metric([state], count)
        families.append(counted)
    return families


async def exposition(op: Operator) -> tuple[bytes, str]:
    try:
        lag: list[PartitionLag] | None = await op.lag()
    except KafkaUnavailable:
        lag = None
    families = scrape_families(
        table_keys(op.app), lag, table_ready(op.app), op.trends.latest_devices()
    )
    scrape = CollectorRegistry()
    scrape.register(_Families(families))
    return render(METRICS.registry, scrape)
