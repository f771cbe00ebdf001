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
from typing import Any, Final

import cel

from schemas.errors import FieldError, FleetError, Loc, one_line

ROOTS: Final = frozenset(
    {"device", "sensors", "ts", "event_id", "metadata", "fields", "flow", "device_id", "value"}
)
"""Top-level names a template may use (expressions get the same, ``flow`` and ``value`` aside)."""


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

    __slots__ = ("field", "node_id", "program", "source")

    def __init__(self, source: str, *, node_id: str, loc: Loc) -> None:
        self.source = source
        self.node_id = node_id
        self.field = ".".join(str(part) for part in loc[2:]) or "expr"
        try:
            self.program = cel.compile(source)
        except (ValueError, RuntimeError) as exc:
            message = f"node {node_id!r}: not a valid CEL expression: {one_line(str(exc))}"
            raise CompileError(FieldError(loc, message, "expression")) from exc

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
