"""Where the local stack keeps its files: everything under ``settings.stack.home``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: infra/ of the repository (templates and the Maven pom of the local Kafka).
INFRA_DIR = Path(__file__).resolve().parent.parent.parent / "infra"


@dataclass(frozen=True)
class StackPaths:
    """Layout of a stack home: ``<home>/<service>/...``, ``run/<service>.pid``, ``logs/``."""

    home: Path

    @property
    def run_dir(self) -> Path:
        return self.home / "run"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def service_dir(self, service: str) -> Path:
        return self.home / service

    def pid_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.pid"

    def log_file(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    def ensure(self) -> None:
        """Create the home, run and logs folders (idempotent)."""
        for folder in (self.home, self.run_dir, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
