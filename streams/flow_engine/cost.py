"""A static cost limit for CEL expressions, judged on their text when a flow is compiled.

The CEL package has no cost or step limit (no budget, no cancellation), and while it evaluates
it holds the GIL, so nothing else in the process runs meanwhile. What an expression can cost is
therefore bounded before it ever runs, by three rules:

* **Comprehensions nest at most** :data:`MAX_DEPTH` **(2) deep.** A comprehension (``map``,
  ``filter``, ``all``, ``exists``, ``exists_one``) runs its body once per item of its list, so
  each level multiplies the work by that list's length: four levels over 20 items took
  0.5-1.1 s here, five 29 s. One inside another's *list* (``xs.filter(...).map(...)``) counts as
  nested too: ``map`` can grow every item, and chained ones grow them exponentially.
* **An expression holding a comprehension is at most** :data:`MAX_CHARS` **(200) characters**,
  which bounds the lists it can spell out. ``map`` and ``filter`` copy their whole result,
  items included, on every item, so two nested maps whose body is a list cost about
  ``n1 * n2**2 * n3``: filling 200 characters (lists of 14, 28 and 42) took 25-50 ms here,
  250 characters 0.1 s, 500 characters 5-12 s.
* **``matches`` may not appear inside a comprehension, and at most** :data:`MAX_MATCHES`
  **(2) times in an expression.** It compiles its pattern on every call: 45-135 ms for the
  largest pattern the regex engine accepts (``\\w{160}``).

The worst expression these allow (two such ``matches`` and nested maps in the rest of the 200
characters) took 0.1-0.3 s here; one without ``matches`` at most 50 ms. A flow's cost is the
sum of its expressions'. The bound is on an expression's shape, not on the data it is handed: a
list a reading or an earlier node supplies (a 32-entry metadata map, a list a transform built
into ``fields``) is as long as it is, and two nested maps over it cost its length cubed. That is
why the API's dry run also has a time limit (``FLEET_API__DRY_RUN_TIMEOUT_S``); this bound keeps
that a backstop.

The text is read by a small tokenizer that knows CEL's strings (quotes, triple quotes, raw and
bytes prefixes) and ``//`` comments, so a macro name inside a string never counts and none in
the code is missed; it runs only on text the CEL parser has already accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

MAX_DEPTH: Final = 2
MAX_CHARS: Final = 200
MAX_MATCHES: Final = 2

MACROS: Final = frozenset({"all", "exists", "exists_one", "existsOne", "filter", "map"})
"""CEL's comprehension macros, as the package's parser expands them (``has`` is no loop)."""

_HINT_WORDS: Final = ("all", "exists", "filter", "map", "matches")
"""Every macro name and ``matches`` contains one of these: text without any is not tokenized."""

_OPEN: Final = {"(": ")", "[": "]", "{": "}"}
_CLOSE: Final = frozenset(_OPEN.values())

_SPACE = re.compile(r"(?:\s+|//[^\n]*)+")
_STRING_START = re.compile(r"([rRbB]{0,2})(\"\"\"|'''|\"|')")
_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+[uU]?|\d*\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+[uU]?")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str
    """``ident``, ``literal``, ``open``, ``close``, ``dot`` or ``op``."""
    text: str


@dataclass(frozen=True, slots=True)
class Shape:
    """What of an expression's text bears on its cost."""

    depth: int
    """How deep comprehensions nest (0: none)."""
    matches: int
    """Calls of ``matches``."""
    matches_in_comprehension: bool


NO_LOOPS: Final = Shape(depth=0, matches=0, matches_in_comprehension=False)


def refusal(source: str) -> str | None:
    """Why ``source`` (an expression CEL compiled) is refused, or None when it is within the
    limits."""
    try:
        shape = shape_of(source)
    except ValueError as exc:
        return f"its cost cannot be judged ({exc})"
    if shape.depth > MAX_DEPTH:
        return (
            f"comprehensions (map, filter, all, exists, exists_one) nest {shape.depth} deep, "
            f"at most {MAX_DEPTH} are allowed: each level multiplies the work by its list's "
            "length (one working on another's result counts as nested)"
        )
    if shape.depth and len(source) > MAX_CHARS:
        return (
            f"an expression with a comprehension may be at most {MAX_CHARS} characters long, "
            f"this one is {len(source)} (a transform can compute a part into fields)"
        )
    if shape.matches_in_comprehension:
        return (
            "matches() inside a comprehension compiles its pattern for every item; "
            "match outside it (or in an earlier node)"
        )
    if shape.matches > MAX_MATCHES:
        return (
            f"matches() is called {shape.matches} times, at most {MAX_MATCHES} are allowed "
            "in one expression (each call compiles its pattern)"
        )
    return None


def shape_of(source: str) -> Shape:
    """The :class:`Shape` of ``source``; raises ValueError on text CEL would not parse (an
    unterminated string, unbalanced brackets)."""
    if not any(word in source for word in _HINT_WORDS):
        return NO_LOOPS
    tokens = _tokens(source)
    partner = _partners(tokens)
    spans: list[tuple[int, int]] = []
    calls: list[int] = []
    for index, token in enumerate(tokens):
        if token.kind != "ident" or index + 1 >= len(tokens) or tokens[index + 1].text != "(":
            continue
        if token.text == "matches":
            calls.append(index)
        elif token.text in MACROS and index > 0 and tokens[index - 1].kind == "dot":
            spans.append((_receiver_start(tokens, partner, index - 1), partner[index + 1]))
    depth = max((_enclosing(span, spans) + 1 for span in spans), default=0)
    inside = any(start < call < end for call in calls for start, end in spans)
    return Shape(depth=depth, matches=len(calls), matches_in_comprehension=inside)


def _enclosing(span: tuple[int, int], spans: list[tuple[int, int]]) -> int:
    start, end = span
    return sum(1 for other in spans if other != span and other[0] <= start and end <= other[1])


def _tokens(source: str) -> list[_Token]:
    tokens: list[_Token] = []
    position, length = 0, len(source)
    while position < length:
        space = _SPACE.match(source, position)
        if space is not None:
            position = space.end()
            continue
        string = _STRING_START.match(source, position)
        if string is not None:
            position = _string_end(source, string)
            tokens.append(_Token("literal", "string"))
            continue
        number = _NUMBER.match(source, position)
        if number is not None:
            position = number.end()
            tokens.append(_Token("literal", number.group()))
            continue
        ident = _IDENT.match(source, position)
        if ident is not None:
            position = ident.end()
            tokens.append(_Token("ident", ident.group()))
            continue
        text = source[position]  # an operator or bracket: only brackets and dots matter
        position += 1
        kind = "open" if text in _OPEN else "close" if text in _CLOSE else "op"
        tokens.append(_Token("dot" if text == "." else kind, text))
    return tokens


def _string_end(source: str, start: re.Match[str]) -> int:
    """Where the string literal that ``start`` opens ends. Raw strings (``r`` prefix) have no
    escapes; the others' backslash escapes the character after it (``\\x41``, ``\\u00e9`` and
    ``\\101`` hold no quote, so this finds the same end as CEL's lexer)."""
    prefix, quote = start.groups()
    raw = "r" in prefix.lower()
    position = start.end()
    while True:
        found = source.find(quote, position)
        backslash = -1 if raw else source.find("\\", position, None if found < 0 else found)
        if backslash >= 0:
            position = backslash + 2
            continue
        if found < 0:
            raise ValueError("an unterminated string")
        return found + len(quote)


def _partners(tokens: list[_Token]) -> dict[int, int]:
    """Each bracket's index to its partner's."""
    partner: dict[int, int] = {}
    stack: list[int] = []
    for index, token in enumerate(tokens):
        if token.kind == "open":
            stack.append(index)
        elif token.kind == "close":
            if not stack or _OPEN[tokens[stack[-1]].text] != token.text:
                raise ValueError("unbalanced brackets")
            opener = stack.pop()
            partner[opener], partner[index] = index, opener
    if stack:
        raise ValueError("unbalanced brackets")
    return partner


def _receiver_start(tokens: list[_Token], partner: dict[int, int], dot: int) -> int:
    """The first token of what the member access at ``dot`` applies to: CEL's grammar makes it
    a primary (a name, literal, parenthesised expression, list or map) followed by selections
    (``.name``), calls (``.name(...)``, ``name(...)``) and indexes (``[...]``). Walked from the
    right, so ``a.b(c)[0].map`` gives the index of ``a``."""
    index = dot - 1
    while index >= 0:
        token = tokens[index]
        if token.kind == "close":
            opener = partner[index]
            before = tokens[opener - 1] if opener > 0 else None
            if token.text == ")" and before is not None and before.kind == "ident":
                index = opener - 1  # a call: name(...)
            elif token.text == "]" and before is not None and _ends_member(before):
                index = opener - 1  # an index: x[...]
            elif token.text == "}" and before is not None and before.kind == "ident":
                index = opener - 1  # a message: Type{...}
            else:
                return opener  # (expr), [list] or {map}
            continue
        if token.kind == "ident":
            if index > 0 and tokens[index - 1].kind == "dot":
                if index > 1 and _ends_member(tokens[index - 2]):
                    index -= 2  # a selection: x.name
                    continue
                return index - 1  # a name from the root: .name
            return index
        if token.kind == "literal":
            return index
        return dot  # not a member access (CEL would not have parsed it)
    return dot


def _ends_member(token: _Token) -> bool:
    return token.kind in ("ident", "literal", "close")
