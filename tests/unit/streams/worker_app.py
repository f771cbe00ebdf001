"""The worker's Faust app as the unit tests of its Faust patches build it (no broker)."""

from __future__ import annotations

from pathlib import Path

import faust


def worker_app(tmp_path: Path) -> faust.App:
    """The app ``streams.app.create_app`` makes with default settings, its data in ``tmp_path``."""
    from schemas.settings import Settings
    from streams.app import create_app

    base = Settings()
    worker = base.worker.model_copy(update={"datadir": tmp_path})
    return create_app(base.model_copy(update={"worker": worker}))
