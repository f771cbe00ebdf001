"""Sink: ``fleet.alerts.v1`` → the Postgres ``alerts`` table (what ``/api/v1/alerts`` reads).

Takes batches of alert records, writes them in one transaction (idempotent on ``alert_id``,
see :mod:`connectors.postgres.alerts`) and acks only after the commit. While Postgres is down the
batch is retried with capped backoff and the partition waits; a record that is not an alert
event goes to the dead-letter topic (stage ``sink.alerts``).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from agents.deadletters import KafkaMessage, dead_letter
from connectors.postgres.alerts import AlertStore
from connectors.postgres.errors import is_retriable
from connectors.postgres.pool import create_pool
from schemas.contract_wire import decode_alert
from schemas.flows import AlertEvent
from streams.context import WorkerContext, guarded
from streams.metrics import timed
from streams.outputs import Outputs
from streams.retry import retry_until_done
from streams.topics import bytes_topic

STAGE = "sink.alerts"


Alert = tuple[KafkaMessage, AlertEvent]


def read_alerts(
    messages: Sequence[KafkaMessage], deadletter_topic: str, now: datetime
) -> tuple[list[Alert], Outputs]:
    """The alert events of ``messages`` in order, and dead letters for what is not one."""
    alerts: list[Alert] = []
    letters = Outputs()
    for message in messages:
        try:
            event = decode_alert(message.value or b"")
            uuid.UUID(event.alert_id)
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as exc:
            letters.add(deadletter_topic, dead_letter(STAGE, message, exc, now))
            continue
        alerts.append((message, event))
    return alerts, letters


async def _write(
    store: AlertStore, alerts: list[Alert], backoff_max_s: float
) -> list[tuple[KafkaMessage, Exception]]:
    """Commit the alerts; the ones Postgres refuses for their data are returned (split in
    halves to find them), outages are retried while the partition waits."""
    if not alerts:
        return []
    try:
        await retry_until_done(
            lambda: store.write([event for _, event in alerts]),
            what=f"writing {len(alerts)} alerts to Postgres",
            is_retriable=is_retriable,
            backoff_max_s=backoff_max_s,
        )
    except Exception as exc:  # noqa: BLE001 - retriable errors never get here: data errors
        if len(alerts) == 1:
            return [(alerts[0][0], exc)]
        middle = len(alerts) // 2
        return await _write(store, alerts[:middle], backoff_max_s) + await _write(
            store, alerts[middle:], backoff_max_s
        )
    return []


def register(ctx: WorkerContext) -> None:
    settings = ctx.settings
    topic = bytes_topic(ctx.app, settings.topics.alerts)

    async def sink_alerts(stream: Any) -> None:
        pg = settings.postgres
        pool = await retry_until_done(
            lambda: create_pool(pg, min_size=0, max_size=2),
            what="connecting to Postgres (alerts sink)",
            is_retriable=lambda exc: True,
            backoff_max_s=settings.worker.retry_backoff_max_s,
        )
        store = timed(AlertStore(pool), "alerts")
        try:
            batches = stream.noack_take(
                settings.flows.alerts_batch_max, settings.worker.batch_within_s
            )
            async for events in batches:
                alerts, letters = read_alerts(
                    [event.message for event in events],
                    settings.topics.deadletter,
                    datetime.now(UTC),
                )
                for message, error in await _write(
                    store, alerts, settings.worker.retry_backoff_max_s
                ):
                    letters.add(
                        settings.topics.deadletter,
                        dead_letter(STAGE, message, error, datetime.now(UTC)),
                    )
                await ctx.publish(letters)
                for event in events:
                    await stream.ack(event)
        finally:
            await pool.close()

    ctx.app.agent(topic, name="sink-alerts")(guarded("sink-alerts", sink_alerts, ctx.crashes))
