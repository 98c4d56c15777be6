"""The README documents what the code does: every setting, both set-up commands, the rooms."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import AliasChoices, BaseModel
from pydantic.fields import FieldInfo

from api.settings import Settings
from store.settings import StoreSettings
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def variable_names(name: str, field: FieldInfo) -> list[str]:
    alias = field.validation_alias
    if isinstance(alias, AliasChoices):
        return [str(choice) for choice in alias.choices]
    return [f"AUTOTAG_{name.upper()}"]


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "see meaning"  # computed where it runs (e.g. from the cores); said in the text
    value = field.default
    if value is None:
        return "—"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    return f"`{value}`"


def settings_table(model: type[BaseModel], names: list[str]) -> str:
    """The README's table for ``names`` of ``model``: variables, default, help text."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name in names:
        field = model.model_fields[name]
        variables = " or ".join(f"`{v}`" for v in variable_names(name, field))
        rows.append(f"| {variables} | {_default(field)} | {field.description} |")
    return "\n".join(rows)


STORE_FIELDS = list(StoreSettings.model_fields)
SERVICE_FIELDS = [name for name in Settings.model_fields if name not in StoreSettings.model_fields]
WORKER_FIELDS = [
    name for name in WorkerSettings.model_fields if name not in StoreSettings.model_fields
]


def test_the_settings_tables_are_the_settings_model() -> None:
    # To regenerate after changing a setting: print(settings_table(...)) and paste.
    assert settings_table(StoreSettings, STORE_FIELDS) in README
    assert settings_table(Settings, SERVICE_FIELDS) in README
    assert settings_table(WorkerSettings, WORKER_FIELDS) in README


def test_every_variable_the_readme_names_is_a_setting() -> None:
    known = {
        variable
        for model in (Settings, WorkerSettings)
        for name, field in model.model_fields.items()
        for variable in variable_names(name, field)
    }
    section = README[README.index("## Settings") : README.index("## Where things live")]
    named = set(re.findall(r"`((?:AUTOTAG_|ES_)[A-Z_]+|MAVEN_REPO)`", section))
    assert named <= known, named - known


def test_the_two_commands_come_first_and_ci_runs_the_test_command() -> None:
    commands = README.index("scripts/dev up"), README.index("scripts/dev test")
    assert max(commands) < README.index("## A tour")
    ci = (ROOT / ".ci" / "run").read_text()
    assert "exec scripts/dev test" in ci


def test_where_things_live_names_every_top_level_package() -> None:
    table = README[README.index("## Where things live") :]
    packages = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))
    for package in packages:
        assert f"| `{package}/` |" in table, package
