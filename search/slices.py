"""Saved slices: what the language knows about ``slice = "name"`` without fetching anything.

A slice is a named query saved by the service. In a query, ``slice = "night_highway"`` stands
for that query **as if it were written in parentheses in its place**: it binds like a group, so
``slice = "cars" AND score >= 0.8`` (with ``cars`` saved as ``object_prefix:car``) means
``(object_prefix:car) AND score >= 0.8``, where the score binds to the car. Slices may use
slices; a cycle, an unknown name or nesting deeper than ``MAX_SLICE_DEPTH`` is a query error
with the caret on the ``slice = ...`` term the user typed.

Resolution happens in :func:`search.parse`, which takes the lookup (name -> query text) from
its caller. The helpers here read slice terms from text (the lexer's tokens, so a ``slice``
inside a quoted value is never one): which slices a text uses, which slices depend on one, and
a text with a slice renamed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Final

from lark.exceptions import UnexpectedCharacters

from search.ast import Span
from search.fields import SLICE_FIELD
from search.parser import MAX_SLICE_DEPTH, MAX_SLICE_EXPANSIONS, _lexer, unquote
from search.render import quote_text

__all__ = [
    "MAX_SLICE_DEPTH",
    "MAX_SLICE_EXPANSIONS",
    "SLICE_NAME_RE",
    "dependants",
    "rename_references",
    "slice_references",
    "used_slices",
]

# What a slice may be called: written bare in a query (`slice = night_highway`) or quoted.
SLICE_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")


def _terms(text: str) -> Iterator[tuple[str, Span]]:
    """``(name, span of the name's token)`` for each ``slice = name`` term of ``text``.

    Reads as far as the text lexes (a stored slice always does).
    """
    window: list[tuple[str, str, Span]] = []
    try:
        for token in _lexer().tokens(text):
            window.append((token.type, token.value, Span(token.start_pos or 0, token.end_pos or 0)))
            if len(window) > 3:
                window.pop(0)
            if len(window) == 3:
                (kind, field, _), (op_kind, op, _), (value_kind, value, span) = window
                if (
                    kind == "FIELD"
                    and field.lower() == SLICE_FIELD
                    and (op_kind, op) == ("OPERATOR", "=")
                    and value_kind in ("BARE", "STRING")
                ):
                    yield (unquote(value) if value_kind == "STRING" else value), span
    except UnexpectedCharacters:
        return


def slice_references(text: str) -> list[str]:
    """The slices ``text`` names directly, in order of first appearance."""
    if SLICE_FIELD not in text.lower():
        return []
    return list(dict.fromkeys(name for name, _ in _terms(text)))


def used_slices(text: str, slices: Mapping[str, str]) -> dict[str, str]:
    """Every saved slice ``text`` uses, directly or through other slices (names not in
    ``slices`` are left out: parsing will say they are unknown)."""
    found: dict[str, str] = {}
    todo = slice_references(text)
    while todo:
        name = todo.pop()
        if name in found or name not in slices:
            continue
        found[name] = slices[name]
        todo.extend(slice_references(slices[name]))
    return dict(sorted(found.items()))


def dependants(name: str, slices: Mapping[str, str]) -> list[str]:
    """The saved slices that use ``name``, directly or through others, sorted."""
    used_by: dict[str, set[str]] = {}
    for other, text in slices.items():
        for reference in slice_references(text):
            used_by.setdefault(reference, set()).add(other)
    found: set[str] = set()
    todo = [name]
    while todo:
        for other in used_by.get(todo.pop(), ()):
            if other not in found and other != name:
                found.add(other)
                todo.append(other)
    return sorted(found)


def rename_references(text: str, old: str, new: str) -> str:
    """``text`` with every ``slice = old`` term naming ``new`` instead; the rest unchanged."""
    spans = [span for name, span in _terms(text) if name == old]
    for span in reversed(spans):
        text = text[: span.start] + quote_text(new) + text[span.end :]
    return text
