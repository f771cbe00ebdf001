"""CEL expressions and ``${name}`` templates of flow nodes, compiled once per flow version.

Expressions run in the ``common-expression-language`` package (the Rust CEL interpreter): no
Python ``eval``, no access to anything but the variables we hand in, and no loops beyond CEL's
macros over finite lists. Compilation happens when a flow version is loaded (API, CLI, worker),
so a syntax error is a 422 naming the node and field, never a surprise per reading. So is an
expression whose shape could cost too much (:mod:`streams.flow_engine.cost`).

Templates (URLs, headers, topics, keys, messages) are :class:`string.Template` with dotted
names (``${device.id}``, ``${fields.temp_f}``): substitution only, no expressions, no attribute
access. Names are checked at compile time against the variables a run provides.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

import cel

from schemas.errors import FieldError, FleetError, Loc, one_line
from streams.flow_engine import cost

ROOTS: Final = frozenset(
    {"device", "sensors", "ts", "event_id", "metadata", "fields", "flow", "device_id", "value"}
)
"""Top-level names a template may use (expressions get the same, ``flow`` and ``value`` aside)."""


CONTEXT_ROOTS: Final = frozenset({"device", "sensors", "ts", "event_id", "metadata", "fields"})
"""The variables an expression's CEL context can hold (``engine.ReadingView.context``)."""


@dataclass(frozen=True, slots=True)
class Needs:
    """What of a reading expressions read. CEL converts every value handed to it (~1 µs a map,
    ~0.6 µs a field; a whole reading ~25 µs), so a context gets only the roots its expressions
    name, and of ``sensors`` only the sensor types they select."""

    roots: frozenset[str] = CONTEXT_ROOTS
    sensor_types: frozenset[str] | None = None
    """The types read as ``sensors.<type>``; None when ``sensors`` is used any other way
    (``size(sensors)``, ``sensors["x"]``, a macro on it): then the whole map is handed."""

    def __or__(self, other: Needs) -> Needs:
        mine, theirs = self.sensor_types, other.sensor_types
        types = None if mine is None or theirs is None else mine | theirs
        return Needs(self.roots | other.roots, types)


_INTERNED: dict[Needs, Needs] = {}
_INTERNED_KEPT: Final = 10_000


def interned(needs: Needs) -> Needs:
    """One object for equal needs: a reading's context checks them by identity first, so flows
    that read the same share that check."""
    if len(_INTERNED) >= _INTERNED_KEPT:
        _INTERNED.clear()
    return _INTERNED.setdefault(needs, needs)


NOTHING: Final = Needs(frozenset(), frozenset())
EVERYTHING: Final = Needs()

_SENSORS_NAME: Final = re.compile(r"\bsensors\b")
_SELECTED_TYPE: Final = re.compile(r"\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)(\s*\()?")


def needs_of(source: str, variables: list[str]) -> Needs:
    """The needs of an expression, from its source and the variables CEL says it names."""
    roots = frozenset(variables) & CONTEXT_ROOTS
    if "sensors" not in roots:
        return Needs(roots, frozenset())
    # No `sensors.<type>` in the text although CEL names the variable: hand the whole map.
    return Needs(roots, selected_sensor_types(source) or None)


def selected_sensor_types(source: str) -> frozenset[str] | None:
    """The ``<type>`` of every ``sensors.<type>`` in ``source``; None if ``sensors`` appears
    otherwise. Judged on the text, so a string literal or ``metadata.sensors.x`` can only widen
    what is handed (a type too many, or the whole map), never narrow it: every way CEL has to
    reach into the root ``sensors`` other than selecting a field (an index, ``.?``, a method or
    macro call) makes it None."""
    types: set[str] = set()
    for name in _SENSORS_NAME.finditer(source):
        selected = _SELECTED_TYPE.match(source, name.end())
        if selected is None or selected.group(2) is not None:
            return None
        types.add(selected.group(1))
    return frozenset(types)


class ContextSource(Protocol):
    """Gives the CEL context of a reading (``engine.ReadingView``)."""

    def context(self, fields: dict[str, Any], needs: Needs) -> cel.Context: ...


_FIELD_PATH: Final = re.compile(r"\s*fields((?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*)+)\s*")
_UNSURE: Final = object()
_SAME_IN_CEL: Final = frozenset({bool, float, str, type(None)})
_INT64: Final = range(-(2**63), 2**63)


def _field_value(fields: dict[str, Any], path: tuple[str, ...]) -> Any:
    """``fields.<path>`` as CEL would give it, or ``_UNSURE`` when only CEL can say: a missing
    key (CEL's error), a value CEL converts on the way (an int past 64 bits, a list, a map)."""
    value: Any = fields
    for name in path:
        if type(value) is not dict or name not in value:
            return _UNSURE
        value = value[name]
    kind = type(value)
    if kind in _SAME_IN_CEL or (kind is int and value in _INT64):
        return value
    return _UNSURE


class EvaluationError(FleetError):
    """An expression or template failed on one reading (a missing sensor field, a type mismatch,
    a division by zero): that reading's run of the flow stops and is dead-lettered."""

    def __init__(self, node_id: str, field: str, message: str) -> None:
        super().__init__(f"node {node_id!r} {field}: {one_line(message)}")
        self.node_id = node_id
        self.field = field


class CompileError(FleetError):
    """An expression or template that cannot be compiled; ``error`` locates it."""

    def __init__(self, error: FieldError) -> None:
        super().__init__(error.describe())
        self.error = error


_EVAL_ERRORS: Final = (
    KeyError,
    TypeError,
    ValueError,
    RuntimeError,
    ZeroDivisionError,
    OverflowError,
    IndexError,
)


class Expression:
    """One compiled CEL program of node ``node_id``'s ``field``."""

    __slots__ = ("field", "needs", "node_id", "path", "program", "source")

    def __init__(self, source: str, *, node_id: str, loc: Loc) -> None:
        self.source = source
        self.node_id = node_id
        self.field = ".".join(str(part) for part in loc[2:]) or "expr"
        try:
            self.program = cel.compile(source)
        except (ValueError, RuntimeError) as exc:
            message = f"node {node_id!r}: not a valid CEL expression: {one_line(str(exc))}"
            raise CompileError(FieldError(loc, message, "expression")) from exc
        too_costly = cost.refusal(source)
        if too_costly is not None:
            message = f"node {node_id!r}: {too_costly}"
            raise CompileError(FieldError(loc, message, "cost"))
        self.needs = needs_of(source, self.program.variables())
        path = _FIELD_PATH.fullmatch(source)
        self.path = None if path is None else tuple(_names(path.group(1)))
        """A plain ``fields.<name>`` read in Python: handing ``fields`` to CEL after every node
        that set one (~2.4 µs) cost more than the read itself."""

    def evaluate(self, source: ContextSource, fields: dict[str, Any], needs: Needs) -> Any:
        """The value for a reading whose CEL context ``source`` gives; ``needs`` are those of
        the whole flow (one object per flow: the context is checked once per flow run)."""
        if self.path is not None:
            value = _field_value(fields, self.path)
            if value is not _UNSURE:
                return value
        try:
            return self.program.execute(source.context(fields, needs))
        except _EVAL_ERRORS as exc:
            raise EvaluationError(self.node_id, self.field, _describe(exc)) from exc

    def boolean(self, source: ContextSource, fields: dict[str, Any], needs: Needs) -> bool:
        result = self.evaluate(source, fields, needs)
        if not isinstance(result, bool):
            raise EvaluationError(
                self.node_id, self.field, f"expected a bool, got {type(result).__name__}"
            )
        return result

    def number(self, source: ContextSource, fields: dict[str, Any], needs: Needs) -> float:
        result = self.evaluate(source, fields, needs)
        if isinstance(result, bool) or not isinstance(result, int | float):
            raise EvaluationError(
                self.node_id, self.field, f"expected a number, got {type(result).__name__}"
            )
        return float(result)


def _names(dotted: str) -> list[str]:
    return [name.strip() for name in dotted.split(".")[1:]]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, KeyError):
        return f"no such key {exc.args[0]!r} (guard it with has())"
    return str(exc) or type(exc).__name__


class _Dotted(string.Template):
    idpattern = r"[a-z_][a-z0-9_]*(?:\.[a-z0-9_]+)*"
    flags = re.IGNORECASE


class Template:
    """A ``${dotted.name}`` template; ``escape`` is applied to every substituted value."""

    __slots__ = ("_names", "_template", "field", "node_id", "source")

    def __init__(self, source: str, *, node_id: str, loc: Loc) -> None:
        self.source = source
        self.node_id = node_id
        self.field = ".".join(str(part) for part in loc[2:])
        self._template = _Dotted(source)
        if not self._template.is_valid():
            message = f"node {node_id!r}: invalid template (use ${{name}}; $$ for a dollar sign)"
            raise CompileError(FieldError(loc, message, "template"))
        self._names = self._template.get_identifiers()
        for name in self._names:
            if name.split(".", 1)[0] not in ROOTS:
                roots = ", ".join(sorted(ROOTS))
                message = f"node {node_id!r}: unknown name ${{{name}}} (names start with {roots})"
                raise CompileError(FieldError(loc, message, "template"))

    def render(self, variables: Mapping[str, Any], escape: Callable[[str], str] = str) -> str:
        values = {name: escape(_text(self._lookup(variables, name))) for name in self._names}
        return self._template.substitute(values)

    def _lookup(self, variables: Mapping[str, Any], name: str) -> Any:
        value: Any = variables
        for part in name.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise EvaluationError(self.node_id, self.field, f"${{{name}}} has no value")
            value = value[part]
        return value


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
