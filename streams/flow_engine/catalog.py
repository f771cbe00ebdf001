"""The enabled flows of a worker, indexed by what they match: device id, tag, profile."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from streams.flow_engine.engine import CompiledFlow


@dataclass(frozen=True)
class FlowSet:
    """An immutable snapshot: the worker swaps in a new one when the registry changes."""

    flows: Sequence[CompiledFlow] = ()
    _everything: list[CompiledFlow] = field(default_factory=list)
    _by_device: dict[str, list[CompiledFlow]] = field(default_factory=dict)
    _by_tag: dict[str, list[CompiledFlow]] = field(default_factory=dict)
    _by_profile: dict[str, list[CompiledFlow]] = field(default_factory=dict)

    @classmethod
    def of(cls, flows: Iterable[CompiledFlow]) -> FlowSet:
        ordered = sorted(flows, key=lambda flow: flow.flow_id)
        made = cls(ordered)
        for flow in ordered:
            match = flow.match
            if match.everything:
                made._everything.append(flow)
            for device_id in match.devices:
                made._by_device.setdefault(device_id, []).append(flow)
            for tag in match.tags:
                made._by_tag.setdefault(tag, []).append(flow)
            for profile in match.profiles:
                made._by_profile.setdefault(profile, []).append(flow)
        return made

    def __bool__(self) -> bool:
        return bool(self.flows)

    def for_device(
        self, device_id: str, tags: Sequence[str], profile: str | None
    ) -> list[CompiledFlow]:
        """The flows whose device part matches, in flow id order, each once."""
        found: dict[str, CompiledFlow] = {flow.flow_id: flow for flow in self._everything}
        for flow in self._by_device.get(device_id, ()):
            found[flow.flow_id] = flow
        for tag in tags:
            for flow in self._by_tag.get(tag, ()):
                found[flow.flow_id] = flow
        if profile is not None:
            for flow in self._by_profile.get(profile, ()):
                found[flow.flow_id] = flow
        return [found[flow_id] for flow_id in sorted(found)]

    @staticmethod
    def for_reading(
        flows: Sequence[CompiledFlow], sensor_types: Iterable[str]
    ) -> list[CompiledFlow]:
        """Of a device's flows, those whose ``match.sensors`` the reading carries."""
        present = set(sensor_types)
        return [flow for flow in flows if present.issuperset(flow.match.sensors)]
