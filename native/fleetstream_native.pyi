"""fleetstream's compiled per-batch core (Rust, PyO3): see ``schemas.compiled_core``."""

from collections.abc import Callable, Sequence

FieldSpec = tuple[str, str, bool, float | None, float | None, list[str], str | None]
SensorSpec = tuple[str, str, bool, bool, list[FieldSpec], tuple[int, int, int] | None]
AvroLayout = tuple[list[str], list[tuple[str, list[tuple[str, str, bool]] | None]]]

class Core:
    """The validate step's compiled core, built once per worker from the catalogue."""

    def __init__(
        self,
        *,
        raw_prefix: bytes,
        sensors: Sequence[SensorSpec],
        unknown_types: tuple[int, int, int] | None,
        limits: tuple[int, int, int],
        max_replays: int,
        metadata: tuple[int, int, int, int],
        sources: Sequence[str],
        sensor_name_max: int,
        avro: AvroLayout | None = None,
    ) -> None: ...
    def validate(
        self,
        values: Sequence[bytes | None],
        now_us: int,
        enrich: Callable[[str], bytes | tuple[bytes, bytes] | None],
        avro_prefix: bytes | None = None,
    ) -> list[list[tuple[str, bytes, bytes | None] | bytes] | None]:
        """Per record, per item: its curated reading as (device_id, JSON, Avro value), or the
        item's bytes to leave it to the reference; None leaves the whole record to the
        reference. ``enrich(device_id)``: the enrichment's JSON fields, or (JSON, Avro
        fields); None or an Exception leaves the device to the reference. The Avro value is
        written with ``avro_prefix`` (its framing) when the core has a layout and ``enrich``
        gave Avro fields; else None."""

def format_float(value: float) -> str | None:
    """A finite float as the curated JSON writes it (msgspec's notation); None for a value
    halfway between two shortest forms (the core leaves such readings to the reference)."""

class RedisMerge:
    """The Redis sink's merge: curated envelopes in, its device commands out, packed."""

    def __init__(self, *, envelope_prefix: bytes, key_prefix: str) -> None: ...
    def merge(self, values: Sequence[bytes | None]) -> tuple[bytes, int, int] | None:
        """(packed commands, how many, devices), or None to leave the batch to the reference."""
