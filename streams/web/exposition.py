"""``/metrics`` of a worker: the agents' metrics (``streams.metrics``) and, per scrape, the sizes
of the tables this worker owns and the consumer lag of the app's groups.

Table sizes count the keys of this worker's active partitions (standby copies are another
worker's), so they add up across workers. Consumer lag is the broker's view of every partition
of every group of the app, the same on every worker: aggregate it with ``max``, not ``sum``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, cast

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from connectors.kafka.errors import KafkaUnavailable
from connectors.kafka.partitioner import partition_for
from streams.metrics import METRICS
from streams.web.devices import table_ready

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


async def exposition(op: Operator) -> tuple[bytes, str]:
    tables = GaugeMetricFamily(
        "fleet_table_keys", "keys of the table in this worker's active partitions", labels=["table"]
    )
    for name, size in table_keys(op.app).items():
        tables.add_metric([name], size)
    lag = GaugeMetricFamily(
        "fleet_consumer_lag",
        "end offset minus committed offset (same on every worker: use max)",
        labels=["group", "topic", "partition"],
    )
    up = GaugeMetricFamily("fleet_consumer_lag_up", "1 when the lag could be read from Kafka")
    try:
        for row in await op.lag():
            lag.add_metric([row.group, row.topic, str(row.partition)], row.lag)
        up.add_metric([], 1)
    except KafkaUnavailable:
        up.add_metric([], 0)
    scrape = CollectorRegistry()
    scrape.register(_Families([tables, lag, up]))
    return generate_latest(METRICS.registry) + generate_latest(scrape), CONTENT_TYPE_LATEST
