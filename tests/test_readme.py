"""The README documents what the code does: every API setting, both set-up commands."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from api.settings import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        first = alias.choices[0] if isinstance(alias, AliasChoices) else f"AUTOTAG_{name.upper()}"
        assert f"| `{first}`" in README, f"README lacks the setting {first}"
        assert str(field.description) in README


def test_the_two_commands_come_first_and_ci_runs_the_test_command() -> None:
    commands = README.index("scripts/dev up"), README.index("scripts/dev test")
    assert max(commands) < README.index("## A tour")
    ci = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()
    assert "exec scripts/dev test" in ci
