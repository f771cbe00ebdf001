"""Flow definitions and alert events: the contracts of ``fleet.flows.v1`` and ``fleet.alerts.v1``.

A flow is what an operator writes (JSON or YAML): which devices it applies to (``match``) and a
chain of nodes run on every matching curated reading, in order:

=============  ==============================================================================
``filter``     ``expr`` (CEL, bool): false ends the run for this reading
``transform``  ``set``: ``{name: CEL}``; each result becomes ``fields.<name>`` for later nodes
``threshold``  ``value`` (CEL, number) and ``above``/``below``: passes when the value is beyond
               a limit (the value becomes ``fields.<node id>``), else ends the run
``http``       a request (method, URL template, headers, body, timeout, retries with backoff)
``mqtt``       a publish (topic template, QoS, retain, body)
``kafka``      a record to a named topic (key template, body)
``alert``      the last node of an alert rule: condition, clear condition (hysteresis),
               ``for_s`` (how long the condition must hold), ``schedule``, severity, message
=============  ==============================================================================

Expressions are CEL (``streams.flow_engine.expressions``) over ``device`` (id, name, profile, tags,
location, timezone), ``sensors`` (the reading's sensors), ``ts`` (timestamp), ``event_id``,
``metadata`` and ``fields``. Templates (URLs, headers, topics, keys, messages) substitute
``${name}`` with the same names, dotted (``${device.id}``, ``${fields.temp_f}``).

:func:`decode_definition` checks the structure; its errors name the node (index and id) and the
field. ``flows.compiler`` then compiles every expression once per flow version.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass, field
from datetime import datetime, time
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from schemas.errors import FieldError, ValidationFailure, field_error_from_message
from schemas.readings import DeviceId

__all__ = [
    "ALERT_SCHEMA_VERSION",
    "FLOW_ID_PATTERN",
    "AlertEvent",
    "AlertNode",
    "FlowDefinition",
    "FlowDocument",
    "HttpNode",
    "KafkaNode",
    "Match",
    "MqttNode",
    "Node",
    "Schedule",
    "decode_alert_event",
    "decode_definition",
    "decode_flow_document",
    "encode",
]

FLOW_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9._-]{0,63}\Z"
NODE_ID_PATTERN: Final = r"^[a-z][a-z0-9_]{0,31}\Z"
TOPIC_PATTERN: Final = r"^[A-Za-z0-9._-]{1,249}\Z"
_LABEL: Final = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}\Z"
_HHMM: Final = r"^([01][0-9]|2[0-3]):[0-5][0-9]\Z"
MAX_NODES: Final = 32
ALERT_SCHEMA_VERSION: Final = 1

NodeId = Annotated[str, Meta(pattern=NODE_ID_PATTERN)]
Expr = Annotated[str, Meta(min_length=1, max_length=4000)]
Template = Annotated[str, Meta(min_length=1, max_length=2000)]
Label = Annotated[str, Meta(pattern=_LABEL)]
Severity = Literal["info", "warning", "critical"]
Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: Final[tuple[Day, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class _Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class Match(_Strict, frozen=True):
    """Which readings a flow runs on. A device matches when all three lists are empty, or its id
    is in ``devices``, or one of its tags is in ``tags``, or its profile is in ``profiles``; the
    reading must also carry every sensor type in ``sensors``."""

    devices: Annotated[list[DeviceId], Meta(max_length=10_000)] = []
    tags: Annotated[list[Label], Meta(max_length=100)] = []
    profiles: Annotated[list[Label], Meta(max_length=100)] = []
    sensors: Annotated[list[Label], Meta(max_length=20)] = []

    @property
    def everything(self) -> bool:
        return not (self.devices or self.tags or self.profiles)


class Schedule(_Strict, frozen=True):
    """When an alert may fire: between ``start`` and ``end`` (HH:MM, local time; an end before
    the start wraps past midnight), on ``days`` (all when empty), in ``timezone`` (IANA name;
    default: the device's ``metadata.timezone``, else ``metadata.location.timezone``, else UTC)."""

    start: Annotated[str, Meta(pattern=_HHMM)]
    end: Annotated[str, Meta(pattern=_HHMM)]
    days: list[Day] = []
    timezone: str | None = None

    def window(self) -> tuple[time, time]:
        return time.fromisoformat(self.start), time.fromisoformat(self.end)


class FilterNode(_Strict, frozen=True, tag="filter"):
    id: NodeId
    expr: Expr


class TransformNode(_Strict, frozen=True, tag="transform"):
    id: NodeId
    set: Annotated[dict[NodeId, Expr], Meta(min_length=1, max_length=64)]


class ThresholdNode(_Strict, frozen=True, tag="threshold"):
    id: NodeId
    value: Expr
    above: float | None = None
    below: float | None = None


class HttpNode(_Strict, frozen=True, tag="http"):
    id: NodeId
    url: Template
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: Annotated[dict[str, Template], Meta(max_length=32)] = {}
    body: Expr | None = None
    """CEL giving the JSON body; default: the flow message (see ``streams.flow_engine.engine``)."""
    timeout_s: Annotated[float, Meta(gt=0, le=60)] = 5.0
    retries: Annotated[int, Meta(ge=0, le=10)] = 2
    backoff_s: Annotated[float, Meta(ge=0, le=30)] = 0.5


class MqttNode(_Strict, frozen=True, tag="mqtt"):
    id: NodeId
    topic: Template
    qos: Literal[0, 1] = 1
    retain: bool = False
    body: Expr | None = None
    timeout_s: Annotated[float, Meta(gt=0, le=60)] = 5.0
    retries: Annotated[int, Meta(ge=0, le=10)] = 2
    backoff_s: Annotated[float, Meta(ge=0, le=30)] = 0.5


class KafkaNode(_Strict, frozen=True, tag="kafka"):
    id: NodeId
    topic: Annotated[str, Meta(pattern=TOPIC_PATTERN)]
    key: Template | None = None
    """Template of the record key; default: the device id."""
    body: Expr | None = None


class AlertNode(_Strict, frozen=True, tag="alert"):
    id: NodeId
    condition: Expr
    clear: Expr | None = None
    """When an active alert clears; default: the condition no longer holds. A clear condition
    looser than ``not condition`` (e.g. fire above 500, clear below 450) is the hysteresis."""
    value: Expr | None = None
    """The number reported with the alert (e.g. the gas concentration)."""
    for_s: Annotated[float, Meta(ge=0, le=7 * 24 * 3600)] = 0.0
    """The condition must hold this long (reading timestamps) before the alert fires."""
    schedule: Schedule | None = None
    severity: Severity = "warning"
    message: Annotated[str, Meta(max_length=2000)] = ""


Node = FilterNode | TransformNode | ThresholdNode | HttpNode | MqttNode | KafkaNode | AlertNode


class FlowDefinition(_Strict, frozen=True, kw_only=True):
    name: Annotated[str, Meta(min_length=1, max_length=200)]
    description: Annotated[str, Meta(max_length=2000)] = ""
    match: Match = Match()
    nodes: Annotated[list[Node], Meta(min_length=1, max_length=MAX_NODES)]

    @property
    def alert(self) -> AlertNode | None:
        last = self.nodes[-1]
        return last if isinstance(last, AlertNode) else None


class FlowDocument(msgspec.Struct, frozen=True, kw_only=True):
    """A flow as stored and as published on ``fleet.flows.v1`` (key: ``flow_id``; a tombstone
    when the flow is deleted). Workers run the enabled ones; ``version`` grows by one with every
    change of the definition."""

    flow_id: str
    version: int
    enabled: bool
    definition: FlowDefinition
    created_at: datetime
    updated_at: datetime
    schema_version: int = 1


class AlertEvent(msgspec.Struct, frozen=True, kw_only=True):
    """One alert transition on ``fleet.alerts.v1`` (key: device_id).

    An alert *fires* once when its rule's condition starts to hold (for ``for_s``, inside the
    schedule) and *clears* once when it ends. ``alert_id`` names the episode (both records of
    one episode carry it) and is derived from rule, device and the episode's number, so a
    transition replayed after a crash carries the same id: consumers keep one record per
    (``alert_id``, ``state``).
    """

    alert_id: str
    rule_id: str
    rule_version: int
    rule_name: str
    device_id: str
    severity: Severity
    state: Literal["fired", "cleared"]
    started_at: datetime
    """Reading time at which the condition started to hold (before ``for_s`` ran)."""
    fired_at: datetime
    """Reading time of the firing reading."""
    cleared_at: datetime | None = None
    """Reading time of the clearing reading (``cleared`` only)."""
    value: float | None = None
    """The rule's value on the reading that caused this transition."""
    message: str = ""
    event_id: str
    """The reading that caused this transition."""
    detected_at: datetime
    """Worker clock when the transition was decided."""
    schema_version: int = ALERT_SCHEMA_VERSION


_encoder = msgspec.json.Encoder()
_definition_decoder = msgspec.json.Decoder(FlowDefinition)
_document_decoder = msgspec.json.Decoder(FlowDocument)
_alert_decoder = msgspec.json.Decoder(AlertEvent)


def encode(value: Any) -> bytes:
    return _encoder.encode(value)


def decode_flow_document(data: bytes) -> FlowDocument:
    return _document_decoder.decode(data)


def decode_alert_event(data: bytes) -> AlertEvent:
    return _alert_decoder.decode(data)


def decode_definition(data: bytes | dict[str, Any]) -> FlowDefinition:
    """A checked definition from JSON bytes or a parsed document (e.g. YAML).

    Raises :class:`ValidationFailure` whose errors say which node (``nodes[2]`` and its id)
    and which field are wrong.
    """
    try:
        if isinstance(data, bytes | bytearray):
            definition = _definition_decoder.decode(data)
        else:
            definition = msgspec.convert(data, FlowDefinition)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        error = field_error_from_message(str(exc))
        raw = _raw_nodes(data)
        raise ValidationFailure([_name_node(error, raw)]) from exc
    problems = list(_check(definition))
    if problems:
        raise ValidationFailure(problems)
    return definition


def node_error(nodes: list[Node], index: int, field: str, message: str, kind: str) -> FieldError:
    """A definition error at ``nodes[index].field`` whose message names the node's id."""
    return FieldError(("nodes", index, field), f"node {nodes[index].id!r}: {message}", kind)


def _check(definition: FlowDefinition) -> list[FieldError]:
    nodes = definition.nodes
    problems: list[FieldError] = []
    seen: set[str] = set()
    for index, node in enumerate(nodes):
        if node.id in seen:
            problems.append(node_error(nodes, index, "id", "two nodes have this id", "duplicate"))
        seen.add(node.id)
        if isinstance(node, AlertNode) and index != len(nodes) - 1:
            message = "an alert node must be the last node of the flow"
            problems.append(node_error(nodes, index, "type", message, "value"))
        if isinstance(node, ThresholdNode) and node.above is None and node.below is None:
            message = "give `above`, `below` or both"
            problems.append(node_error(nodes, index, "above", message, "missing"))
        if isinstance(node, AlertNode) and node.schedule is not None:
            problems.extend(_check_schedule(nodes, index, node.schedule))
    return problems


def _check_schedule(nodes: list[Node], index: int, schedule: Schedule) -> list[FieldError]:
    problems: list[FieldError] = []
    if schedule.start == schedule.end:
        message = "schedule.start and schedule.end are equal (an empty window)"
        problems.append(node_error(nodes, index, "schedule", message, "value"))
    if schedule.timezone is not None and not valid_timezone(schedule.timezone):
        message = f"schedule.timezone {schedule.timezone!r} is not an IANA time zone"
        problems.append(node_error(nodes, index, "schedule", message, "timezone"))
    return problems


def valid_timezone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _raw_nodes(data: bytes | dict[str, Any]) -> list[Any]:
    if isinstance(data, dict):
        nodes = data.get("nodes")
    else:
        try:
            nodes = msgspec.json.decode(data).get("nodes")
        except (msgspec.DecodeError, AttributeError):
            return []
    return nodes if isinstance(nodes, list) else []


def _name_node(error: FieldError, raw_nodes: list[Any]) -> FieldError:
    """Put the node's id into the message of an error located inside ``nodes[i]``."""
    loc = error.loc
    if len(loc) < 2 or loc[0] != "nodes" or not isinstance(loc[1], int):
        return error
    index = loc[1]
    node = raw_nodes[index] if index < len(raw_nodes) else None
    node_id = node.get("id") if isinstance(node, dict) else None
    label = f"node {node_id!r}" if isinstance(node_id, str) else f"node {index}"
    message = error.message
    if loc[2:] == ("type",) and message.startswith("Invalid value"):
        message = f"{message}: type must be one of {', '.join(_NODE_TYPES)}"
    return FieldError(loc, f"{label}: {message}", error.type)


_NODE_TYPES: Final = ("filter", "transform", "threshold", "http", "mqtt", "kafka", "alert")


@dataclass(frozen=True)
class Outbound:
    """One integration call a run asked for."""

    flow_id: str
    flow_version: int
    node_id: str
    kind: Literal["http", "mqtt", "kafka"]
    target: str
    """URL, MQTT topic or Kafka topic."""
    body: bytes
    device_id: str
    event_id: str
    call_id: str
    """Stable per (flow version, node, reading): the HTTP ``Idempotency-Key``."""
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    key: bytes | None = None
    qos: int = 1
    retain: bool = False
    timeout_s: float = 5.0
    retries: int = 0
    backoff_s: float = 0.5

    def describe(self) -> dict[str, Any]:
        """The call as JSON-able data: the dry-run answer and a dead letter's original."""
        shown: dict[str, Any] = {
            "flow_id": self.flow_id,
            "flow_version": self.flow_version,
            "node_id": self.node_id,
            "kind": self.kind,
            "target": self.target,
            "device_id": self.device_id,
            "event_id": self.event_id,
            "call_id": self.call_id,
            "body": msgspec.json.decode(self.body) if self.body else None,
        }
        if self.kind == "http":
            shown.update(method=self.method, headers=self.headers)
        if self.kind == "mqtt":
            shown.update(qos=self.qos, retain=self.retain)
        if self.kind == "kafka":
            shown["key"] = None if self.key is None else self.key.decode(errors="replace")
        return shown
