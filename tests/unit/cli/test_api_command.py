"""``fleetstream api`` with several processes: what it refuses before starting anything."""

from __future__ import annotations

import os

import pytest

from api.metrics import MULTIPROCESS_DIR, ApiMetrics
from cli.api_command import ApiSettingsError, serve_api
from schemas.settings import Settings


def _settings(processes: int, seeds: str) -> Settings:
    base = Settings()
    return base.model_copy(
        update={
            "api": base.api.model_copy(update={"processes": processes}),
            "compat": base.compat.model_copy(update={"seeds": seeds}),
        }
    )


def test_several_processes_with_seed_002s_websocket_port_are_refused_naming_both() -> None:
    with pytest.raises(ApiSettingsError, match=r"FLEET_API__PROCESSES.*002"):
        serve_api(_settings(2, "001,002"))
    assert MULTIPROCESS_DIR not in os.environ  # refused before anything was set up


def test_one_process_renders_its_own_registry() -> None:
    metrics = ApiMetrics()
    assert metrics.exposition() is metrics.registry
