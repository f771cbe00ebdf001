"""docs/configuration.md is what the settings object makes, and a new setting shows up there."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict
from typer.testing import CliRunner

from cli.config_docs import PAGE, render, sections
from cli.main import app
from schemas.settings import PROJECT_ROOT


def test_the_committed_page_is_the_generated_one() -> None:
    committed = PAGE.read_text(encoding="utf-8")
    assert committed == render(), (
        "docs/configuration.md differs from the settings object: "
        "run `uv run fleetstream docs config --write` and commit the page"
    )


class Limits(BaseModel):
    per_s: float = Field(ge=0)
    burst: int = Field(ge=1)


class Things(BaseModel):
    """Things the tests add."""

    new_limit: int = Field(default=3, ge=1, le=9, description="a | new limit")
    token: SecretStr = SecretStr("do-not-print-me")
    mode: Literal["fast", "slow"] = "fast"
    folder: Path = PROJECT_ROOT / ".stack" / "things"
    window_ms: int = 7 * 24 * 3600 * 1000
    limits: Limits = Field(default_factory=lambda: Limits(per_s=2.5, burst=4), description="caps")


class Tiny(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TINY_", env_nested_delimiter="__")

    verbose: bool = False
    things: Things = Things()


def test_a_setting_added_to_a_section_shows_up_with_its_variable_default_and_meaning() -> None:
    page = render(Tiny)

    assert "| `TINY_VERBOSE` | bool | `false` |  |" in page
    assert "## things\n\nThings the tests add.\n" in page
    assert "| `TINY_THINGS__NEW_LIMIT` | int, ≥ 1, ≤ 9 | `3` | a \\| new limit |" in page
    assert "| `TINY_THINGS__MODE` | `fast` \\| `slow` | `fast` |  |" in page
    assert "| `TINY_THINGS__FOLDER` | path | `.stack/things` |  |" in page
    assert "| `TINY_THINGS__WINDOW_MS` | int | `604800000` (7 days) |  |" in page
    assert "| `TINY_THINGS__LIMITS__PER_S` | float, ≥ 0 | `2.5` | caps |" in page
    assert "| `TINY_THINGS__LIMITS__BURST` | int, ≥ 1 | `4` | caps |" in page


def test_a_secret_shows_no_default() -> None:
    page = render(Tiny)

    assert "| `TINY_THINGS__TOKEN` | secret | (not shown) |  |" in page
    assert "do-not-print-me" not in page


def test_the_environment_does_not_change_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    before = render()
    monkeypatch.setenv("FLEET_KAFKA__PARTITIONS", "3")
    monkeypatch.setenv("FLEET_AUTH__ADMIN_TOKEN", "a-real-secret")

    assert render() == before
    assert "a-real-secret" not in before


def test_every_field_of_the_settings_has_a_row() -> None:
    variables = [row.variable for section in sections() for row in section.settings]

    assert len(variables) == len(set(variables))
    assert "FLEET_KAFKA__BOOTSTRAP_SERVERS" in variables
    assert "FLEET_API__RATE_LIMIT__BURST" in variables
    assert "FLEET_ENVIRONMENT" in variables


def test_the_command_prints_the_page() -> None:
    result = CliRunner().invoke(app, ["docs", "config"])

    assert result.exit_code == 0
    assert result.stdout == render()
