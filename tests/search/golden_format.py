"""Read and write golden files: blocks of ``query:`` text and the DSL it must translate to.

A block looks like::

    # what the case shows
    query: object_prefix:car AND score < 0.5
    inner_hits: true            (optional)
    dsl:
    { ...pretty JSON... }
    ---

Set ``AUTOTAG_UPDATE_GOLDEN=1`` to rewrite every ``dsl:`` from the current translator, then
read the diff before committing it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GOLDEN_DIR = Path(__file__).parent / "golden"
SEPARATOR = "---"
# The saved slices every golden query is parsed with (see golden/slices.txt).
GOLDEN_SLICES: dict[str, str] = {
    "cars": "object_prefix:car",
    "confident_cars": "slice = cars AND score >= 0.8",
    "night_highway": "image_prefix:time_of_day_night AND image_prefix:scene_highway",
    "v2": 'training_set = "model_v2"',
    "crowded": "count(object_prefix:pedestrian AND score >= 0.6) >= 5",
}


@dataclass
class GoldenCase:
    path: Path
    comments: list[str]
    query: str
    inner_hits: bool
    dsl: Any

    @property
    def id(self) -> str:
        return f"{self.path.stem}:{self.query}"


def read_cases(path: Path) -> list[GoldenCase]:
    cases = []
    for block in path.read_text(encoding="utf-8").split(f"\n{SEPARATOR}\n"):
        if not block.strip():
            continue
        comments: list[str] = []
        query: str | None = None
        inner_hits = False
        body: list[str] = []
        in_dsl = False
        for line in block.strip("\n").splitlines():
            if in_dsl:
                body.append(line)
            elif line.startswith("#"):
                comments.append(line)
            elif line.startswith("query: "):
                query = line[len("query: ") :]
            elif line.strip() == "inner_hits: true":
                inner_hits = True
            elif line.strip() == "dsl:":
                in_dsl = True
        assert query is not None, f"{path}: block without `query:`\n{block}"
        text = "\n".join(body).strip()
        cases.append(
            GoldenCase(path, comments, query, inner_hits, json.loads(text) if text else None)
        )
    return cases


def write_cases(path: Path, cases: list[GoldenCase]) -> None:
    blocks = []
    for case in cases:
        lines = [*case.comments, f"query: {case.query}"]
        if case.inner_hits:
            lines.append("inner_hits: true")
        lines += ["dsl:", json.dumps(case.dsl, indent=2, ensure_ascii=False)]
        blocks.append("\n".join(lines))
    path.write_text(f"\n{SEPARATOR}\n".join(blocks) + "\n", encoding="utf-8")


def all_cases() -> list[GoldenCase]:
    return [case for path in sorted(GOLDEN_DIR.glob("*.txt")) for case in read_cases(path)]
