"""The flow registry as a worker holds it: documents replace, tombstones remove, changes count."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.kafka.flow_cache import FlowIndex
from schemas.flows import FlowDocument, encode
from streams.flow_engine.examples import examples

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def document(flow_id: str, version: int, enabled: bool = True) -> bytes:
    return encode(
        FlowDocument(
            flow_id=flow_id,
            version=version,
            enabled=enabled,
            definition=examples()["gas-above-500"],
            created_at=NOW,
            updated_at=NOW,
        )
    )


def test_latest_document_wins_tombstones_remove_and_generation_counts_changes() -> None:
    index = FlowIndex()
    index.apply(b"gas", document("gas", 1))
    index.apply(b"gas", document("gas", 2, enabled=False))
    index.apply(b"other", document("other", 1))
    assert {k: (d.version, d.enabled) for k, d in index.documents().items()} == {
        "gas": (2, False),
        "other": (1, True),
    }
    generation = index.generation
    index.apply(b"other", None)
    index.apply(b"missing", None)  # a tombstone for nothing changes nothing
    assert set(index.documents()) == {"gas"}
    assert index.generation == generation + 1


def test_bad_records_are_skipped_without_stopping_the_cache() -> None:
    index = FlowIndex()
    index.apply(b"gas", b"{not json")
    index.apply(b"gas", document("another-id", 1))  # keyed by one flow, about another
    index.apply(None, document("gas", 1))
    assert index.documents() == {} and index.generation == 0
