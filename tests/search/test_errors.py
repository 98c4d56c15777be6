"""The error table: bad queries -> error class, span and the rendered caret message.

Cases live in ``errors.txt`` (query as a JSON string, then ``error: Class start end`` and the
rendered message). ``AUTOTAG_UPDATE_GOLDEN=1`` rewrites the expectations from the code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

import search
from search import QueryError, parse

TABLE = Path(__file__).parent / "errors.txt"
# The saved slices every query of the table is parsed with.
ERROR_SLICES: dict[str, str] = {
    "cars": "object_prefix:car",
    "images": "image_prefix:weather",
    "loop_a": "slice = loop_b",
    "loop_b": "dataset = x AND slice = loop_a",
    "uses_missing": "object_prefix:car OR slice = nothere",
    "broken": "scor >= 0.5",
    "item_fields": "dataset = train",
    **{f"deep{n}": f"slice = deep{n + 1}" for n in range(9)},
    "deep9": "object_prefix:car",
    "fan0": "object_prefix:car",
    **{f"fan{n}": " OR ".join([f"slice = fan{n - 1}"] * 4) for n in (1, 2, 3)},
}


@dataclass
class ErrorCase:
    query: str
    error: str = ""
    start: int = -1
    end: int = -1
    rendered: str = ""


def _strip(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.splitlines())


def read_table() -> list[ErrorCase]:
    cases = []
    for block in TABLE.read_text(encoding="utf-8").split("\n---\n"):
        lines = block.strip("\n").splitlines()
        case = ErrorCase(json.loads(lines[0].removeprefix("query: ")))
        if len(lines) > 1:
            name, start, end = lines[1].removeprefix("error: ").split()
            case.error, case.start, case.end = name, int(start), int(end)
            case.rendered = "\n".join(lines[3:])
        cases.append(case)
    return cases


def _raise(query: str) -> QueryError:
    with pytest.raises(QueryError) as caught:
        parse(query, slices=ERROR_SLICES)
    return caught.value


CASES = read_table()


def test_table_is_big_enough() -> None:
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=lambda case: repr(case.query)[:60])
def test_error(case: ErrorCase) -> None:
    error = _raise(case.query)
    assert type(error).__name__ == case.error
    assert issubclass(getattr(search, case.error), QueryError)
    assert (error.start, error.end) == (case.start, case.end)
    assert 0 <= error.start <= error.end <= len(case.query)
    assert error.query == case.query
    assert _strip(error.render()) == case.rendered


def test_end_of_input_errors_point_past_the_last_character() -> None:
    for query in ["score >= ", "object_prefix:car AND", "(object_prefix:car", "NOT"]:
        error = _raise(query)
        assert (error.start, error.end) == (len(query), len(query))


def test_error_attributes() -> None:
    error = _raise("scor >= 0.5")
    assert error.code == "unknown_field"
    assert error.message == "unknown field `scor`"
    assert error.hint == "did you mean `score`?"


def test_query_length_limit_is_configurable() -> None:
    parse("object_prefix:car", max_length=17)
    with pytest.raises(search.QueryTooLongError) as caught:
        parse("object_prefix:car", max_length=16)
    assert (caught.value.start, caught.value.end) == (16, 17)


if os.environ.get("AUTOTAG_UPDATE_GOLDEN"):

    def test_update_error_table() -> None:
        blocks = []
        for case in read_table():
            error = _raise(case.query)
            blocks.append(
                "\n".join(
                    [
                        "query: " + json.dumps(case.query, ensure_ascii=False),
                        f"error: {type(error).__name__} {error.start} {error.end}",
                        "rendered:",
                        _strip(error.render()),
                    ]
                )
            )
        TABLE.write_text("\n---\n".join(blocks) + "\n", encoding="utf-8")
