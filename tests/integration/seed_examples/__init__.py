"""The seeds' request examples as data: one YAML file per seed document (``seed_00N.yaml``).

Each example keeps the seed's text (``example``, with its ``lines``), the request as the seed
writes it (``request``: method, the seed's URL, headers, and ``json``, ``content`` or ``form``
parts in the seed's order, a file part written ``@name`` as curl's ``-F``), what was substituted
(``substituted``: always host and port; ids, tokens, times where the seed has a placeholder),
the seed's stated answer (``seed_answer``), and the answers checked with every profile on
(``with_profile``) and with none (``without_profile``). ``${name}`` marks a substituted value;
``tests/integration/test_seed_examples.py`` resolves it. Every example is served as written;
seed 002's WebSocket test is also run the way a client outside the trusted networks must
(``with_a_token``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")


@dataclass(frozen=True)
class Example:
    seed: str
    id: str
    data: dict[str, Any]

    @property
    def name(self) -> str:
        return f"{self.seed}-{self.id}"

    @property
    def kind(self) -> str:
        return str(self.data.get("kind", "http"))

    def placeholders(self) -> set[str]:
        """The ``${name}``s this example uses (in its request, registrations and answers)."""
        return set(PLACEHOLDER.findall(yaml.safe_dump(self.data)))


def load(seed: str) -> list[Example]:
    document = yaml.safe_load((HERE / f"seed_{seed}.yaml").read_text())
    assert document["seed"] == seed, f"seed_{seed}.yaml names seed {document['seed']}"
    examples = [Example(seed, item["id"], item) for item in document["examples"]]
    for example in examples:
        missing = REQUIRED - example.data.keys()
        assert not missing, f"seed_{seed}.yaml, {example.id}: no {sorted(missing)}"
    return examples


REQUIRED = {
    "lines",
    "example",
    "substituted",
    "seed_answer",
    "with_profile",
    "without_profile",
}
"""What every example states: where and what the seed wrote, what was substituted, the seed's
answer (or that it states none), and the two answers checked."""


SEEDS = ("000", "001", "002", "003", "004")


def every_example() -> list[Example]:
    return [example for seed in SEEDS for example in load(seed)]


def render(value: Any, values: dict[str, str]) -> Any:
    """``value`` with each ``${name}`` replaced by ``values[name]`` (in nested lists and
    dicts too)."""
    if isinstance(value, str):
        return PLACEHOLDER.sub(lambda match: values[match.group(1)], value)
    if isinstance(value, list):
        return [render(item, values) for item in value]
    if isinstance(value, dict):
        return {render(key, values): render(item, values) for key, item in value.items()}
    return value
