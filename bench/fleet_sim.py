"""One worker's agents in this process, on a virtual clock, for a fleet of registered devices.

The agents' own code runs (``agents.validate``, ``agents.device_state`` with the status table
and the rollups, the status timer, the rollups' ticks, the Redis sink's merge and commands,
the Postgres sink's rows); what is left out is Faust's consumer machinery, the network and the
services: a table is a dict (the memory store), the Redis commands are packed but not sent,
the Postgres rows are built but not copied, and every output record (curated envelopes,
``fleet.readings.v1``, changelogs, transitions, rollups) is produced through a librdkafka
producer with the worker's settings to one scratch topic, or only counted when there is none.

The validate step runs the Python reference, or the compiled core with
``FLEET_STREAM__CORE=compiled`` (as the worker does).

Time is virtual: one :meth:`FleetSim.second` is one second of the fleet sending ``rate``
readings, every device in turn, and of the agents' time-driven work in that second (the
device-state batches, the rollups' tick, the Redis flushes, the status timer every
``FLEET_STREAM__STATUS_CHECK_INTERVAL_S``). So the per-device work that is batched by time
shows at the ratio of devices to readings a real fleet has, without waiting for it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from confluent_kafka import Producer

from agents.curated import Turns
from agents.device_state import DeviceState
from agents.enrichment import Enricher
from agents.postgres_sink import ReadingsSink
from agents.redis_sink import merge
from agents.rollups import Rollups
from agents.sink_group import SinkMessage
from agents.status import DeviceStatus
from agents.validate import Validation
from bench.data import Fleet, encoded_items, group_envelopes, new_fleet, readings
from connectors.kafka.device_cache import DeviceIndex
from connectors.redis.compiled import CompiledMerge
from connectors.redis.keys import RedisKeys
from connectors.redis.wire import pack
from connectors.redis.writer import RedisBatch, RedisWriter
from schemas.avro_codec import AvroEncoder
from schemas.compiled_core import compiled_core
from schemas.contract_wire import decode_rollup_record
from schemas.devices import Device, encode_device, hash_token
from schemas.envelopes import raw_envelope
from schemas.settings import Settings
from streams.outputs import Outputs

if TYPE_CHECKING:
    from fleetstream_native import Core

ENVELOPE_ITEMS = 100
"""Readings per raw envelope (the edges group up to this many per partition)."""
VALIDATE_READINGS = 1000
"""Readings per validate batch (50 ms of a 20,000/s stream)."""
REDIS_FLUSHES = 2
"""Redis sink batches per second (``FLEET_REDIS__FLUSH_INTERVAL_S`` 0.5 s)."""
PHASES = ("validate", "status+rollups", "rollup ticks", "status timer", "redis", "postgres")


def registered(fleet: Fleet, now: datetime) -> DeviceIndex:
    """The registry copy a worker (or an API process) holds, filled from the records the
    registry publishes on ``fleet.devices.v1``: a name, a profile, tags and a location each,
    so enrichment has something to add."""
    index = DeviceIndex()
    for device in fleet_devices(fleet, now):
        index.apply(device.device_id.encode(), encode_device(device))
    return index


def fleet_devices(fleet: Fleet, now: datetime) -> list[Device]:
    """The registry entries of ``fleet``: a name, a profile, tags and a location each."""
    return [
        Device(
            device_id=device_id,
            token_hash=hash_token(f"token-{device_id}"),
            name=f"device {n}",
            profile="machine" if "machine" in device_id else "esp32-room",
            tags=["bench", f"site-{n % 50}"],
            metadata={"location": f"building {n % 20}, floor {n % 5}"},
            created_at=now,
            updated_at=now,
        )
        for n, device_id in enumerate(fleet.devices)
    ]


@dataclass
class _Registry:
    """``WorkerContext.device_cache()`` over a filled index: caught up, nothing deleted."""

    index: DeviceIndex
    caught_up: bool = True

    def get(self, device_id: str) -> Device | None:
        return self.index.get(device_id)

    def deleted(self, within_s: float) -> list[str]:
        return self.index.deleted(within_s)


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name

    def get_topic_name(self) -> str:
        return self.name


class _Table:
    """Faust's memory store as the agents see it."""

    def __init__(self, name: str, **_: Any) -> None:
        self.name = name
        self.data: dict[bytes, bytes] = {}
        self.changelog_topic = _Topic(f"bench-{name}-changelog")

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        return iter(self.data.items())


@dataclass(frozen=True)
class _TP:
    topic: str
    partition: int


class _App:
    """What the status and rollup code asks of the Faust app: tables, no rebalance, every
    partition assigned."""

    def __init__(self, curated: str, partitions: int) -> None:
        self.rebalancing = False
        self.should_stop = False
        ready = asyncio.Event()
        ready.set()
        self.tables = _Namespace(recovery=_Namespace(in_recovery=False, completed=ready))
        actives = {_TP(curated, p) for p in range(partitions)}
        self.assignor = _Namespace(assigned_actives=lambda: actives)

    def Table(self, name: str, **options: Any) -> _Table:
        return _Table(name, **options)


class _Namespace:
    def __init__(self, **attributes: Any) -> None:
        self.__dict__.update(attributes)


class _Stream:
    def __init__(self) -> None:
        self.acked = 0

    async def ack(self, event: Any) -> None:
        self.acked += 1


@dataclass
class _Event:
    message: SinkMessage


@dataclass
class Published:
    """Records and bytes the agents published, by topic."""

    records: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)


class _Context:
    """The ``WorkerContext`` the agents use: settings, app, clock, registry, publish."""

    def __init__(
        self, settings: Settings, registry: _Registry, producer: Producer | None, now: datetime
    ) -> None:
        self.settings = settings
        self.app = _App(settings.topics.curated, settings.kafka.partitions)
        self.crashes = None
        self.now = now
        self.registry = registry
        self.published = Published()
        self.producer = producer
        self.scratch = ""

    def clock(self) -> datetime:
        return self.now

    def device_cache(self) -> _Registry:
        return self.registry

    async def publish(self, outputs: Outputs) -> None:
        records, sizes, producer = self.published.records, self.published.bytes, self.producer
        for topic, batch in outputs.by_topic.items():
            if topic == self.settings.topics.readings_1m:  # what the rollups sink decodes
                for record in batch:
                    decode_rollup_record(record.value or b"")
            records[topic] = records.get(topic, 0) + len(batch)
            sizes[topic] = sizes.get(topic, 0) + sum(len(r.value or b"") for r in batch)
            if producer is None:
                continue
            for record in batch:
                producer.produce(self.scratch, record.value, record.key)
                producer.poll(0)
        if producer is not None and producer.flush(60):
            raise RuntimeError("scratch records not acked within 60 s: is Kafka up?")


class FleetSim:
    """``devices`` registered devices sending ``rate`` readings a second in all, through one
    worker's agents; :meth:`second` runs one virtual second and returns the CPU it took."""

    def __init__(
        self,
        settings: Settings,
        devices: int,
        rate: int,
        producer: Producer | None = None,
        scratch: str = "",
        now: datetime | None = None,
    ) -> None:
        self.settings, self.rate = settings, rate
        self.fleet = new_fleet(devices)
        start = now or datetime.now(UTC)
        registry = _Registry(registered(self.fleet, start))
        self.ctx = _Context(settings, registry, producer, start)
        self.ctx.scratch = scratch
        app: Any = self.ctx
        self.status = DeviceStatus(app)
        self.rollups = Rollups(app, self.status.write_held)
        self.step = DeviceState(app, self.status, self.rollups)
        self.stream = _Stream()
        stream = settings.stream
        self.validation = Validation(
            topics=settings.topics,
            curated_partitions=settings.kafka.partitions,
            envelope_max_bytes=settings.kafka.envelope_max_bytes,
            enricher=Enricher(
                registry, unknown=stream.unknown_devices, disabled=stream.disabled_devices
            ),
            unknown_sensors=stream.unknown_sensor_types,
            max_replays=stream.max_replays,
            readings_encoder=AvroEncoder("readings", 1).readings(),
            core=_validate_core(settings),
        )
        self.writer = RedisWriter(cast(Any, None), RedisKeys("bench"))
        compiled = settings.redis.merge == "compiled"
        self.redis_merge = CompiledMerge("bench") if compiled else None
        self.postgres = ReadingsSink(_NoRows(), settings.topics.deadletter, 1.0, _no_last_seen)
        self.next_device = 0
        self.seconds = 0
        self.offset = 0
        self.cpu: dict[str, float] = dict.fromkeys(PHASES, 0.0)
        self.readings = 0
        self.last_redis_commands = 0

    def _raw_messages(self, count: int) -> list[SinkMessage]:
        """``count`` readings (every device in turn), in raw envelopes of the edges' size."""
        devices = self.fleet.devices
        chosen = [devices[(self.next_device + n) % len(devices)] for n in range(count)]
        self.next_device = (self.next_device + count) % len(devices)
        machines = set(self.fleet.equipment)
        sub = Fleet(self.fleet.run, [d for d in chosen if d not in machines], [])
        sub_machines = Fleet(self.fleet.run, [], [d for d in chosen if d in machines])
        now = self.ctx.now
        bodies = [
            *readings(sub, len(sub.devices), invalid_every=None, now=now, span_s=1.0),
            *readings(sub_machines, len(sub_machines.devices), invalid_every=None, now=now),
        ]
        items = encoded_items(bodies, now)
        envelopes = group_envelopes(items, self.settings.kafka.partitions, max_items=ENVELOPE_ITEMS)
        messages = []
        for envelope in envelopes:
            self.offset += 1
            value = raw_envelope(envelope.items)
            messages.append(
                SinkMessage(
                    "raw", envelope.partition, self.offset, None, value, now.timestamp(), None
                )
            )
        return messages

    async def second(self, rate: int | None = None) -> float:
        """One virtual second at ``rate`` readings (default: the sim's rate); CPU seconds of
        the agents' work in it (generating the readings is not counted)."""
        count = self.rate if rate is None else rate
        raw = self._raw_messages(count)
        spent = 0.0
        curated: list[SinkMessage] = []
        for start in range(0, len(raw), VALIDATE_READINGS // ENVELOPE_ITEMS):
            chunk = raw[start : start + VALIDATE_READINGS // ENVELOPE_ITEMS]
            spent += await self._timed("validate", self._validate(chunk, curated))
        batch_max = self.settings.stream.state_batch_max
        for start in range(0, len(curated), batch_max):
            events = [_Event(m) for m in curated[start : start + batch_max]]
            spent += await self._timed(
                "status+rollups", self.step.on_batch(self.stream, cast(list[Any], events))
            )
        half = (len(curated) + 1) // REDIS_FLUSHES
        for start in range(0, len(curated), max(half, 1)):
            spent += await self._timed("redis", self._redis(curated[start : start + half]))
        spent += await self._timed("postgres", self.postgres.write_batch(curated))
        self.seconds += 1
        for _ in range(self._ticks_due()):
            spent += await self._timed("rollup ticks", self._tick())
        if self.seconds % round(self.settings.stream.status_check_interval_s) == 0:
            spent += await self._timed("status timer", self._status_timer())
        self.ctx.now += timedelta(seconds=1)
        self.readings += count
        return spent

    def _ticks_due(self) -> int:
        """The rollups' ticks that fall in the second just run (``Rollups.tick_s`` apart, as
        the worker's task sleeps between them)."""
        tick_s = self.rollups.tick_s
        return int(self.seconds / tick_s + 1e-9) - int((self.seconds - 1) / tick_s + 1e-9)

    async def _timed(self, phase: str, work: Any) -> float:
        started = time.process_time()
        await work
        spent = time.process_time() - started
        self.cpu[phase] += spent
        return spent

    async def _validate(self, chunk: list[SinkMessage], curated: list[SinkMessage]) -> None:
        outputs = self.validation.run(chunk, self.ctx.now)
        await self.ctx.publish(outputs)
        for record in outputs.records(self.settings.topics.curated):
            self.offset += 1
            curated.append(
                SinkMessage(
                    self.settings.topics.curated,
                    record.partition,
                    self.offset,
                    None,
                    record.value,
                    self.ctx.now.timestamp(),
                    record.headers,
                )
            )

    async def _redis(self, messages: list[SinkMessage]) -> None:
        topics = self.settings.topics
        batch, letters = await merge(
            messages,
            readings_topic=topics.curated,
            deadletter_topic=topics.deadletter,
            now=self.ctx.now,
            turn=Turns(10**9),
            compiled=self.redis_merge,
        )
        commands = self.writer.commands(batch)
        packed = batch.packed.commands if batch.packed is not None else 0
        self.last_redis_commands = len(commands) + packed
        pack(commands)
        await self.ctx.publish(letters)

    async def _tick(self) -> None:
        await self.rollups.tick()

    async def _status_timer(self) -> None:
        await self.status.forget_deleted()
        await self.status.expire_silent()

    async def redis_batch(self, devices: int) -> RedisBatch:
        """The Redis sink's merged batch for one reading of each of the first ``devices``."""
        self.next_device = 0
        curated: list[SinkMessage] = []
        await self._validate(self._raw_messages(devices), curated)
        batch, _ = await merge(
            curated,
            readings_topic=self.settings.topics.curated,
            deadletter_topic=self.settings.topics.deadletter,
            now=self.ctx.now,
            turn=Turns(10**9),
        )
        return batch

    def reset_counters(self) -> None:
        self.cpu = dict.fromkeys(PHASES, 0.0)
        self.readings = 0
        self.ctx.published = Published()


def _validate_core(settings: Settings) -> Core | None:
    """The compiled validate core when ``FLEET_STREAM__CORE=compiled``, as the worker has it."""
    stream = settings.stream
    if stream.core != "compiled":
        return None
    return compiled_core(
        unknown_sensors=stream.unknown_sensor_types,
        limits=settings.generic.limits(),
        max_replays=stream.max_replays,
    )


class _NoRows:
    async def write(self, lines: Any) -> int:
        return len(lines)


async def _no_last_seen(seen: Any) -> None:
    return None


Progress = Callable[[str], None]
