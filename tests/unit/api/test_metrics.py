"""The API's frame counter: what seed 003's ``ingestion_frames_total`` alias reads."""

from __future__ import annotations

from prometheus_client import generate_latest

from api.metrics import ApiMetrics


def _frames(metrics: ApiMetrics, source: str) -> float | None:
    return metrics.registry.get_sample_value("fleet_api_frames_stored_total", {"source": source})


def test_frames_are_counted_per_source_and_an_empty_store_adds_no_series() -> None:
    metrics = ApiMetrics()
    metrics.count_frames("upload", 2)
    metrics.count_frames("upload", 3)
    metrics.count_frames("rtsp", 1)
    metrics.count_frames("rtsp", 0)
    assert _frames(metrics, "upload") == 5.0
    assert _frames(metrics, "rtsp") == 1.0
    fresh = ApiMetrics()
    fresh.count_frames("upload", 0)
    assert 'source="upload"' not in generate_latest(fresh.registry).decode()
