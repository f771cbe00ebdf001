"""Error types shared by every fleetstream package.

``FleetError`` is the root of the project's exception hierarchy; other packages
subclass it.  ``ValidationFailure`` is what the shared validator raises for *any*
bad input; it carries structured :class:`FieldError` items (for a problem+json
422 body or a dead letter) and a one-line human-readable ``reason``.

This module converts msgspec error messages, which look like
``"Expected `int` <= 100 - at `$.sensors.ld2410.moving_energy`"``, into
``FieldError(loc=("sensors", "ld2410", "moving_energy"), ...)``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import msgspec

from schemas.catalogue import sensor_types

__all__ = [
    "BatchValidationFailure",
    "FieldError",
    "FleetError",
    "Loc",
    "ValidationFailure",
    "detach",
    "field_error_from_message",
    "format_loc",
    "one_line",
]

Loc = tuple[str | int, ...]
"""Path to the offending value: field names (str) and array indexes (int)."""

# Keys come from untrusted input; cap them so a 1 MB field name cannot bloat
# logs, 422 bodies or dead letters.
_MAX_LOC_PART = 128
_MAX_REASON = 512

# msgspec appends " - at `$.a[0].b`" (value) or " - at `key` in `$.a`" (dict key).
_SUFFIX_RE = re.compile(r"^(?P<msg>.*?) - at (?P<key>`key` in )?`(?P<path>\$[^`]*)`$", re.S)
# One path step: ".name", "[3]" or "[...]" (msgspec does not report dict keys).
_STEP_RE = re.compile(r"\.(?P<name>[^.\[]+)|\[(?P<index>\d+)\]|\[\.\.\.\]")
_MISSING_RE = re.compile(r"^Object missing required field `(?P<name>.*)`$", re.S)
_UNKNOWN_RE = re.compile(r"^Object contains unknown field `(?P<name>.*)`$", re.S)
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")

# Unknown keys directly under "sensors" are unknown sensor *types*; say so.
_SENSOR_TYPES = ", ".join(sorted(sensor_types()))


class FleetError(Exception):
    """Root of fleetstream's exceptions.

    ``retriable`` tells consumers whether retrying the same input can succeed
    (e.g. a broker outage) or not (e.g. a malformed reading -> dead letter).
    """

    retriable: ClassVar[bool] = False


class FieldError(msgspec.Struct, frozen=True):
    """One problem with the input.

    ``loc`` is the path to the value (``()`` means the document as a whole),
    ``message`` a human-readable sentence, ``type`` a short stable code such as
    ``missing``, ``unknown_field``, ``type``, ``range``, ``pattern``,
    ``length``, ``enum``, ``timezone``, ``datetime``, ``future_timestamp``,
    ``json``, ``encoding``, ``mismatch`` or ``value``.
    """

    loc: Loc
    message: str
    type: str

    def describe(self) -> str:
        """``"sensors.pir.motion_detected: Expected `bool`, got `str`"``."""
        where = format_loc(self.loc)
        return f"{where}: {self.message}" if where else self.message

    def with_prefix(self, *prefix: str | int) -> FieldError:
        """Return a copy whose ``loc`` is nested under ``prefix``."""
        return FieldError(loc=(*prefix, *self.loc), message=self.message, type=self.type)


class ValidationFailure(FleetError):
    """The input is invalid; retrying it cannot help.

    ``errors`` lists every problem found (at least one); ``reason`` is a single
    line naming the first offending field, suitable for logs and a problem+json
    ``detail``.  ``event_id`` is filled in when the failure happened after the
    Kafka envelope was decoded, so a dead letter can be correlated.
    """

    def __init__(
        self,
        errors: Sequence[FieldError],
        reason: str | None = None,
        *,
        event_id: str | None = None,
    ) -> None:
        if not errors:
            raise ValueError("ValidationFailure needs at least one FieldError")
        self.errors: list[FieldError] = list(errors)
        self.reason: str = one_line(reason if reason is not None else _default_reason(errors))
        self.event_id: str | None = event_id
        super().__init__(self.reason)

    @classmethod
    def single(cls, loc: Loc, message: str, type: str) -> ValidationFailure:
        """Shorthand for a failure with exactly one error."""
        return cls([FieldError(loc=loc, message=message, type=type)])

    def with_prefix(self, *prefix: str | int, event_id: str | None = None) -> ValidationFailure:
        """Same failure with every ``loc`` nested under ``prefix`` (same class), and with
        ``event_id`` when given.

        Raise it straight from the expression (``raise exc.with_prefix(...) from exc``): bound
        to a local first, the raised failure would reference itself through its traceback's
        frame, a cycle that keeps the caller's whole batch alive until a garbage collection."""
        errors = [e.with_prefix(*prefix) for e in self.errors]
        return type(self)(errors, event_id=self.event_id if event_id is None else event_id)

    def errors_as_builtins(self) -> list[dict[str, Any]]:
        """``[{"loc": [...], "message": ..., "type": ...}, ...]`` for JSON bodies."""
        return [{"loc": list(e.loc), "message": e.message, "type": e.type} for e in self.errors]

    def __reduce__(self) -> tuple[Any, ...]:
        # Keep the exception picklable despite the custom __init__ signature.
        return (_rebuild, (type(self), self.errors, self.reason, self.event_id))


class BatchValidationFailure(ValidationFailure):
    """One or more items of a JSON array were invalid.

    Every error's ``loc`` starts with the item's index in the array, so the API
    can report all invalid items in one response.
    """

    @property
    def failed_indexes(self) -> list[int]:
        """Sorted indexes of the items that failed."""
        return sorted({e.loc[0] for e in self.errors if e.loc and isinstance(e.loc[0], int)})


def _rebuild(
    cls: type[ValidationFailure],
    errors: list[FieldError],
    reason: str,
    event_id: str | None,
) -> ValidationFailure:
    return cls(errors, reason, event_id=event_id)


def format_loc(loc: Loc) -> str:
    """Render a loc as ``sensors.mq134.gas_concentration`` / ``[1].sensors``."""
    out: list[str] = []
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        else:
            out.append(f".{part}" if out else part)
    return "".join(out)


def field_error_from_message(
    text: str,
    pattern_hints: Mapping[str, str] | None = None,
) -> FieldError:
    """Convert one msgspec (Validation|Decode)Error message into a FieldError.

    ``pattern_hints`` maps regex patterns to plain-language descriptions used
    instead of msgspec's "Expected `str` matching regex '...'".
    """
    loc: Loc = ()
    message = text
    key_error = False
    match = _SUFFIX_RE.match(text)
    if match is not None:
        message = match["msg"]
        loc = _parse_path(match["path"])
        key_error = match["key"] is not None

    if (m := _MISSING_RE.match(message)) is not None:
        return FieldError((*loc, _clip(m["name"])), "missing required field", "missing")
    if (m := _UNKNOWN_RE.match(message)) is not None:
        return FieldError((*loc, _clip(m["name"])), _unknown_message(loc), "unknown_field")
    kind = _classify(message)
    if kind == "pattern" and pattern_hints:
        message = _pattern_hint(message, pattern_hints)
    if key_error:
        return FieldError(loc, f"invalid key: {message}", kind)
    return FieldError(loc, message, kind)


def _pattern_hint(message: str, hints: Mapping[str, str]) -> str:
    # msgspec renders the pattern with repr(): "Expected `str` matching regex '^a\\Z'".
    for pattern, hint in hints.items():
        if message.endswith(f"matching regex {pattern!r}"):
            return hint
    return message


def _parse_path(path: str) -> Loc:
    """``$.a[2].b[...]`` -> ``("a", 2, "b", "*")``; ``*`` stands for any dict key."""
    loc: list[str | int] = []
    for step in _STEP_RE.finditer(path, 1):
        if step["name"] is not None:
            loc.append(_clip(step["name"]))
        elif step["index"] is not None:
            loc.append(int(step["index"]))
        else:
            loc.append("*")
    return tuple(loc)


def _unknown_message(parent: Loc) -> str:
    # Unknown keys under "sensors" (possibly inside a batch / envelope) are
    # unknown sensor types: tell the client what is supported.
    if parent and parent[-1] == "sensors":
        return f"unknown sensor type (supported: {_SENSOR_TYPES})"
    return "unknown field"


def _classify(message: str) -> str:
    """Map a msgspec message to a short, stable error code."""
    if ", got `" in message:
        return "type"
    if "out of range" in message or re.search(r"^Expected `\w+` [<>]=? ", message):
        return "range"
    if "matching regex" in message:
        return "pattern"
    if " of length " in message:
        return "length"
    if message.startswith("Invalid enum value"):
        return "enum"
    if "timezone" in message:
        return "timezone"
    if "datetime" in message or "RFC3339" in message:
        return "datetime"
    if message.startswith(("JSON is malformed", "Input data was truncated")):
        return "json"
    return "value"


def _clip(part: str) -> str:
    part = _CONTROL_RE.sub(" ", part)
    return part if len(part) <= _MAX_LOC_PART else part[: _MAX_LOC_PART - 1] + "…"


def one_line(text: str) -> str:
    """Collapse control characters (newlines...) and cap the length, for log-safe reasons."""
    text = _CONTROL_RE.sub(" ", text)
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 1] + "…"


def _default_reason(errors: Sequence[FieldError]) -> str:
    first = errors[0].describe()
    more = len(errors) - 1
    return f"{first} (and {more} more error{'s' if more > 1 else ''})" if more else first


def detach(exc: BaseException) -> None:
    """Drop ``exc``'s traceback and the exceptions chained to it, to keep it in a result.

    Frames on a traceback reference their callers' frames, so a caught exception stored in a
    value that one of those callers holds is a reference cycle: it, the frames and everything
    they hold live until the garbage collector finds them."""
    exc.__traceback__ = None
    exc.__cause__ = None
    exc.__context__ = None
