"""CEL expressions and ``${name}`` templates of flow nodes, compiled once per flow version.

Expressions run in the ``common-expression-language`` package (the Rust CEL interpreter): no
Python ``eval``, no access to anything but the variables we hand in, and no loops beyond CEL's
macros over finite lists. Compilation happens when a flow version is loaded (API, CLI, worker),
so a syntax error is a 422 naming the node and field, never a surprise per reading.

Templates (URLs, headers, topics, keys, messages) are :class:`string.Template` with dotted
names (``${device.id}``, ``${fields.temp_f}``): substitution only, no expressions, no attribute
access. Names are checked at compile time against the variables a run provides.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cel

from schemas.errors import FieldError, FleetError, Loc, one_line

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

    __slots__ = ("field", "needs", "node_id", "program", "source")

    def __init__(self, source: str, *, node_id: str, loc: Loc) -> None:
        self.source = source
        self.node_id = node_id
        self.field = ".".join(str(part) for part in loc[2:]) or "expr"
        try:
            self.program = cel.compile(source)
        except (ValueError, RuntimeError) as exc:
            message = f"node {node_id!r}: not a valid CEL expression: {one_line(str(exc))}"
            raise CompileError(FieldError(loc, message, "expression")) from exc
        self.needs = needs_of(source, self.program.variables())

    def evaluate(self, context: cel.Context) -> Any:
        try:
            return self.program.execute(context)
        except _EVAL_ERRORS as exc:
            raise EvaluationError(self.node_id, self.field, _describe(exc)) from exc

    def boolean(self, context: cel.Context) -> bool:
        result = self.evaluate(context)
        if not isinstance(result, bool):
            raise EvaluationError(
                self.node_id, self.field, f"expected a bool, got {type(result).__name__}"
            )
        return result

    def number(self, context: cel.Context) -> float:
        result = self.evaluate(context)
        if isinstance(result, bool) or not isinstance(result, int | float):
            raise EvaluationError(
                self.node_id, self.field, f"expected a number, got {type(result).__name__}"
            )
        return float(result)


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
