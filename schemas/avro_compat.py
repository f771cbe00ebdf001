"""BACKWARD compatibility of the Avro contracts, checked without a registry.

A contract's new version must read everything its previous versions wrote: the rule the
registry enforces at ``fleetstream setup`` (BACKWARD), and the one consumers rely on when they
upgrade their reader schema after we do. ``avro/history/<contract>.v<N>.avsc`` keeps every
published version; the unit tests require the newest of them to be the current file (so a
change is published as a new history file) and the current file to read every one of them.
The check is Apache Avro's own schema resolution (the ``avro`` package).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from schemas.avro_codec import HISTORY_DIR, Contract

__all__ = ["backward_problems", "history"]

_VERSION: Final = re.compile(r"\.v(\d+)\.avsc\Z")


def backward_problems(reader: str, writer: str) -> list[str]:
    """Why data written with schema ``writer`` cannot be read with ``reader`` (empty: it can)."""
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    result = checker.get_compatibility(avro.schema.parse(reader), avro.schema.parse(writer))
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    kinds = ", ".join(sorted(kind.value for kind in result.incompatibilities))
    where = ", ".join(sorted(result.locations))
    return [f"{kinds} at {where}: {'; '.join(sorted(result.messages))}"]


def history(contract: Contract, folder: Path = HISTORY_DIR) -> list[Path]:
    """The kept versions of ``contract``, oldest first."""
    found = []
    for path in folder.glob(f"{contract}.v*.avsc"):
        match = _VERSION.search(path.name)
        if match and path.name == f"{contract}.v{match.group(1)}.avsc":
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]
