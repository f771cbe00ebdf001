"""One page of the operator's device list: filters, the device_id cursor, and the merge.

A fleet has 10^5 devices and more, so the list is paged by ``device_id`` (a cursor, ``after``,
not an offset: pages stay right while devices come and go) and filtered by status, tag, profile
and a search on the id or registry name. Devices are where two sources meet: the status table
(spread over the workers, by partition) has every device that sent a reading, the registry
(every worker's copy of ``fleet.devices.v1``) every registered one. Each worker answers with the
first ``limit`` of its own matching states after the cursor; the page is the first ``limit`` of
their union with the registry's matches. That is exact: a device with a state that belongs on
the page is among its worker's first ``limit``, or the worker has ``limit`` smaller ones.

"never seen" (registered, no state anywhere) cannot be answered by a worker alone: registry
candidates are taken in chunks and every worker says which of them it holds (:data:`CHUNK`, at
most :data:`MAX_CHUNKS` chunks a page; a page may then hold fewer than ``limit`` devices, and
``next`` says where the next one starts).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from schemas.devices import Device

STATUSES = ("online", "offline", "never seen")
MAX_LIMIT = 500
CHUNK = 500
MAX_CHUNKS = 20
MAX_TEXT = 128


class FilterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class DeviceFilter:
    """Which devices one page lists, in ``device_id`` order after ``after``."""

    search: str = ""
    status: str | None = None
    tag: str | None = None
    profile: str | None = None
    after: str = ""
    limit: int = 100

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> DeviceFilter:
        """From a request's query string (``q``, ``status``, ``tag``, ``profile``, ``after``,
        ``limit``); FilterError names the field that is wrong."""
        for name in ("q", "tag", "profile", "after"):
            if len(query.get(name, "")) > MAX_TEXT:
                raise FilterError(name, f"at most {MAX_TEXT} characters")
        status = query.get("status") or None
        if status is not None and status not in STATUSES:
            raise FilterError("status", f"one of {', '.join(STATUSES)}")
        try:
            limit = int(query.get("limit", "100"))
        except ValueError:
            raise FilterError("limit", "an integer") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise FilterError("limit", f"from 1 to {MAX_LIMIT}")
        return cls(
            search=query.get("q", ""),
            status=status,
            tag=query.get("tag") or None,
            profile=query.get("profile") or None,
            after=query.get("after", ""),
            limit=limit,
        )

    def as_query(self) -> dict[str, str]:
        fields = asdict(self)
        fields["q"] = fields.pop("search")
        return {key: str(value) for key, value in fields.items() if value not in (None, "")}

    @property
    def needs_registry(self) -> bool:
        """Whether a device must be registered to match (tag and profile live there)."""
        return self.tag is not None or self.profile is not None

    def admits(self, device_id: str, device: Device | None) -> bool:
        """Whether the device matches, apart from its status and the cursor."""
        if self.needs_registry and (
            device is None
            or (self.tag is not None and self.tag not in device.tags)
            or (self.profile is not None and self.profile != device.profile)
        ):
            return False
        if not self.search:
            return True
        needle = self.search.lower()
        name = "" if device is None else (device.name or "")
        return needle in device_id.lower() or needle in name.lower()

    def admits_state(self, online: bool) -> bool:
        wanted = {"online": True, "offline": False}.get(self.status or "")
        return self.status is None or wanted == online


def first(ids: Iterable[str], limit: int) -> list[str]:
    """The ``limit`` smallest ids, sorted (without sorting them all)."""
    return heapq.nsmallest(limit, ids)


def registry_matches(registry: Mapping[str, Device], wanted: DeviceFilter, limit: int) -> list[str]:
    """The first ``limit`` registered ids after the cursor that the filter admits."""
    return first(
        (
            device_id
            for device_id, device in registry.items()
            if device_id > wanted.after and wanted.admits(device_id, device)
        ),
        limit,
    )


def merge_page(
    states: Iterable[dict[str, Any]], registered: Iterable[str], limit: int
) -> tuple[list[dict[str, Any]], bool]:
    """The first ``limit`` rows of the states and the registered ids (as "never seen" rows
    where no state has them), and whether more rows than ``limit`` were offered."""
    rows = {state["device_id"]: state for state in states}
    for device_id in registered:
        rows.setdefault(device_id, {"device_id": device_id, "never_seen": True})
    page = first(rows, limit)
    return [rows[device_id] for device_id in page], len(rows) > limit


def device_page(
    workers: list[dict[str, Any]], registry: Mapping[str, Device], wanted: DeviceFilter
) -> dict[str, Any]:
    """The page from the workers' answers (``Operator.worker``) and the registry."""
    states = [row for worker in workers for row in worker.get("matches", [])]
    registered = (
        registry_matches(registry, wanted, wanted.limit + 1) if wanted.status is None else []
    )
    rows, more = merge_page(states, registered, wanted.limit)
    more = more or any((worker.get("devices") or {}).get("more") for worker in workers)
    for row in rows:
        known = registry.get(row["device_id"])
        never_seen = row.pop("never_seen", False)
        row["status"] = "never seen" if never_seen else "online" if row["online"] else "offline"
        row["name"] = None if known is None else known.name
        row["registered"] = known is not None
        row["enabled"] = None if known is None else known.is_enabled
    return {
        "items": rows,
        "complete": all(worker.get("devices") is not None for worker in workers),
        "errors": {worker["url"]: worker["error"] for worker in workers if worker.get("error")},
        "next": rows[-1]["device_id"] if more and rows else None,
        "filter": wanted.as_query(),
    }
