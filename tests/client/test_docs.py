"""docs/client.md is executed: its ``pycon`` blocks run in order, as one doctest session,
against a real server and node with the API tests' catalogue; its settings table is the
client's settings model."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

from client.settings import ClientSettings
from tests.api.conftest import REVIEW_KEY
from tests.test_readme import settings_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
TEXT = DOC.read_text(encoding="utf-8")
# (the line before the block, the block) of every ``pycon`` block
BLOCKS = [
    (TEXT.count("\n", 0, found.start(1)), found.group(1))
    for found in re.finditer(r"^```pycon\n(.*?)^```$", TEXT, re.MULTILINE | re.DOTALL)
]


def test_the_settings_table_is_the_settings_model() -> None:
    assert settings_table(ClientSettings, list(ClientSettings.model_fields)) in TEXT


@pytest.mark.es
def test_the_examples_run_against_a_real_server(
    api_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # the files the examples write
    monkeypatch.setenv("AUTOTAG_API_URL", api_url)
    monkeypatch.setenv("AUTOTAG_API_KEY", REVIEW_KEY)
    parser = doctest.DocTestParser()
    names: dict[str, object] = {}  # one session: each block sees what the ones before made
    blocks = [parser.get_doctest(text, names, DOC.name, str(DOC), line) for line, text in BLOCKS]
    examples = sum(len(block.examples) for block in blocks)
    assert examples >= 25
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for block in blocks:
        block.globs = names  # DocTest copies the names it is given
        runner.run(block, clear_globs=False)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
    assert result.attempted == examples
