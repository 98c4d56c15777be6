"""AST -> canonical query text, such that ``parse(render(tree)) == tree``.

Canonical form: upper-case keywords, explicit ``AND``, single spaces, lower-case field names,
parentheses only where precedence or the tree's shape needs them, and values written bare
unless quoting is needed to read them back the same way.
"""

from __future__ import annotations

from typing import assert_never

from search.ast import (
    And,
    Comparison,
    Count,
    Instant,
    Label,
    Node,
    Not,
    Number,
    Or,
    ScoreBand,
    Similar,
    Text,
)
from search.fields import NUMBER_RE, iso_text
from search.parser import BARE_RE, KEYWORDS


def render(node: Node) -> str:
    match node:
        case Label(kind=kind, value=value, prefix=prefix, truth=truth):
            field = f"{'truth_' if truth else ''}{kind.value}_prefix"
            return f"{field}:{_text(value)}{'*' if prefix else ''}"
        case Comparison(field=field, op=op, value=value):
            return f"{field} {op} {_value(value)}"
        case Count(condition=condition, op=op, number=number):
            return f"count({render(condition)}) {op} {number}"
        case Similar(kind=kind, value=value, k=k):
            return f"{kind.value}:{_text(value)}{'' if k is None else f'~{k}'}"
        case Not(operand):
            inner = render(operand)
            return f"NOT ({inner})" if isinstance(operand, And | Or) else f"NOT {inner}"
        case And(operands):
            return " AND ".join(
                f"({render(child)})" if isinstance(child, And | Or) else render(child)
                for child in operands
            )
        case Or(operands):
            return " OR ".join(
                f"({render(child)})" if isinstance(child, Or) else render(child)
                for child in operands
            )
        case _:
            assert_never(node)


def _text(value: str) -> str:
    bare = (
        BARE_RE.fullmatch(value)
        and "*" not in value
        and value.lower() not in KEYWORDS
        and not NUMBER_RE.fullmatch(value)
    )
    if bare:
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _value(value: Number | Text | ScoreBand | Instant) -> str:
    match value:
        case Number(number):
            return repr(number)
        case Text(text):
            return _text(text)
        case ScoreBand(band):
            return band.value
        case Instant(start_ms=start_ms, whole_day=whole_day):
            return iso_text(start_ms, whole_day=whole_day)
        case _:
            assert_never(value)


def quote_text(value: str) -> str:
    """A text value as a query writes it: bare when it reads back the same, else quoted."""
    return _text(value)
