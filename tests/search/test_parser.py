"""Parsing: the tree each kind of text produces, spans, and the grammar's health."""

from __future__ import annotations

import re
from collections.abc import Callable
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st
from lark.exceptions import VisitError

from search import InvalidValueError, parse, render
from search.ast import (
    And,
    Band,
    Comparison,
    Instant,
    Label,
    Not,
    Number,
    Op,
    Or,
    ScoreBand,
    Span,
    Text,
)
from search.errors import QueryError
from search.parser import _DESCRIBE, BARE_RE, KEYWORDS, _one_term, _parser
from store.schema import PredictionKind
from tests.search.strategies import any_comparison, any_label

CAR = Label(PredictionKind.OBJECT, "car")
BUS = Label(PredictionKind.OBJECT, "bus")
CLEAR = Label(PredictionKind.IMAGE, "weather_clear")


def test_label() -> None:
    assert parse("object_prefix:car") == CAR
    assert parse("object_prefix:car*") == Label(PredictionKind.OBJECT, "car", prefix=True)
    assert parse('object_prefix:"traffic light"') == Label(PredictionKind.OBJECT, "traffic light")
    assert parse('object_prefix:"car*"') == Label(PredictionKind.OBJECT, "car*")
    assert parse("object_prefix : car") == CAR


def test_precedence_not_and_or() -> None:
    assert parse("object_prefix:car OR object_prefix:bus AND NOT image_prefix:weather_clear") == Or(
        (CAR, And((BUS, Not(CLEAR))))
    )


def test_implicit_and_equals_explicit_and() -> None:
    assert parse("object_prefix:car object_prefix:bus") == parse(
        "object_prefix:car AND object_prefix:bus"
    )


def test_chains_are_flat_and_parentheses_keep_shape() -> None:
    flat = And((CAR, BUS, CLEAR))
    assert parse("object_prefix:car AND object_prefix:bus AND image_prefix:weather_clear") == flat
    nested = parse("object_prefix:car AND (object_prefix:bus AND image_prefix:weather_clear)")
    assert nested == And((CAR, And((BUS, CLEAR))))
    assert parse("((object_prefix:car))") == CAR


def test_keywords_and_field_names_are_case_insensitive() -> None:
    assert parse("Object_Prefix:car and not SCORE < 0.5 Or status = PENDING") == Or(
        (
            And((CAR, Not(Comparison("score", Op.LT, Number(0.5))))),
            Comparison("status", Op.EQ, Text("pending")),
        )
    )


def test_keyword_inside_a_word_is_a_word() -> None:
    assert parse("dataset = andromeda") == Comparison("dataset", Op.EQ, Text("andromeda"))
    assert parse("object_prefix:order") == Label(PredictionKind.OBJECT, "order")


def test_values_are_typed_by_field() -> None:
    assert parse("score = high") == Comparison("score", Op.EQ, ScoreBand(Band.HIGH))
    assert parse('score = "HIGH"') == Comparison("score", Op.EQ, ScoreBand(Band.HIGH))
    assert parse("score >= -1") == Comparison("score", Op.GE, Number(-1))
    assert parse("dataset = 2024") == Comparison("dataset", Op.EQ, Text("2024"))
    assert parse("metadata.lot = 2024") == Comparison("metadata.lot", Op.EQ, Number(2024))
    assert parse('metadata.lot = "2024"') == Comparison("metadata.lot", Op.EQ, Text("2024"))
    assert parse("METADATA.Lot = x").field == "metadata.Lot"  # type: ignore[union-attr]


def test_words_after_colon_or_operator_are_values() -> None:
    assert parse("object_prefix:a:b") == Label(PredictionKind.OBJECT, "a:b")
    assert parse("dataset = s3://x/y") == Comparison("dataset", Op.EQ, Text("s3://x/y"))
    assert parse("(dataset=x)") == Comparison("dataset", Op.EQ, Text("x"))


def test_dates() -> None:
    day = parse("uploaded_at = 2024-01-31")
    assert day == Comparison("uploaded_at", Op.EQ, Instant(1706659200000, whole_day=True))
    moment = parse('uploaded_at < "2024-01-31T02:00:00.5+02:00"')
    assert moment == Comparison("uploaded_at", Op.LT, Instant(1706659200500, whole_day=False))


def test_huge_numbers_are_query_errors() -> None:
    with pytest.raises(InvalidValueError):
        parse("metadata.x = " + "9" * 5000, max_length=10_000)
    with pytest.raises(InvalidValueError):
        parse("score > 1e400")


def test_string_escapes() -> None:
    assert parse(r'dataset = "a \"b\" \\ c"') == Comparison("dataset", Op.EQ, Text('a "b" \\ c'))


def test_spans() -> None:
    tree = parse("NOT (object_prefix:car  AND score >= 0.5)")
    assert isinstance(tree, Not)
    assert tree.span == Span(0, 41)
    inner = tree.operand
    assert isinstance(inner, And)
    assert inner.span == Span(4, 41)
    label, comparison = inner.operands
    assert label.span == Span(5, 22)
    assert comparison.span == Span(28, 40)


def test_spans_do_not_affect_equality() -> None:
    assert parse("object_prefix:car") == parse("   object_prefix:car   ")


def test_render_is_canonical() -> None:
    text = 'object_prefix:car score<0.5 or NOT (dataset="a b" and status = Pending)'
    assert render(parse(text)) == (
        'object_prefix:car AND score < 0.5 OR NOT (dataset = "a b" AND status = pending)'
    )


def test_the_parser_is_strict_lalr() -> None:
    # With strict=True, building the LALR tables (which `import search` does) raises on any
    # shift/reduce or reduce/reduce conflict: that is where the grammar's freedom from
    # conflicts is checked now. This pins the options that make it so.
    options = _parser().options
    assert (options.parser, options.strict) == ("lalr", True)


def test_every_terminal_is_described_in_messages() -> None:
    # A terminal missing here would reach a hint under its grammar name.
    parser = _parser()
    names = {t.name for t in parser.terminals} - set(parser.ignore_tokens)
    assert set(_DESCRIBE) == names | {"$END"}


def test_the_operator_terminal_is_the_op_enum() -> None:
    operator = re.compile(_parser().get_terminal("OPERATOR").pattern.to_regexp())
    candidates = {"".join(chars) for n in (1, 2) for chars in product("!<=>", repeat=n)}
    assert {text for text in candidates if operator.fullmatch(text)} == {op.value for op in Op}


def test_lexical_facts_come_from_the_grammar() -> None:
    assert sorted(KEYWORDS) == ["and", "not", "or"]
    assert BARE_RE.fullmatch("s3://bucket/a-b_1.jpg*")
    assert not BARE_RE.fullmatch('a"b')
    assert not BARE_RE.fullmatch("a b")


def _outcome(read: Callable[[str], object], text: str) -> object:
    """What reading ``text`` gives: a tree (spans included), or the error's kind, span, text."""
    try:
        tree = read(text)
    except QueryError as error:
        return (type(error), error.start, error.end, str(error))
    except VisitError as error:
        inner = error.orig_exc
        assert isinstance(inner, QueryError)
        return (type(inner), inner.start, inner.end, str(inner))
    return (tree, getattr(tree, "span", None))


ONE_TERM_EDGES = [
    "object_prefix:car",
    'image_prefix:"weather clear"*',
    "object_prefix:car*",
    "truth_object_prefix:car",
    'training_set = "model_v2"',
    "score >= 0.8",
    "score = high",
    "score >= 2",
    "uploaded_at >= 2024-01-01",
    "metadata.city = Oslo",
    "box_area < 1024",
    "nosuch:car",
    "nosuch = 3",
    "slice:cars",
    'similar:"rain at night"',
    "similar_to:item-1",
    "similar >= 3",
    "width = abc",
    "  object_prefix:car  ",
]


@given(
    st.one_of(
        st.sampled_from(ONE_TERM_EDGES),
        any_label().map(render),
        any_comparison().map(render),
        st.text(max_size=12),
    )
)
def test_a_one_term_query_reads_as_the_parser_reads_it(text: str) -> None:
    """The shortcut for one-term queries (``search.parser._one_term``) agrees with the parser on
    every text it takes: the same tree with the same spans, or the same error."""
    shortcut = _outcome(_one_term, text)
    if shortcut == (None, None):
        return  # not one term: only the parser reads it
    assert shortcut == _outcome(_parser().parse, text)


def test_the_one_term_shortcut_takes_one_term_and_nothing_else() -> None:
    assert all(_outcome(_one_term, text) != (None, None) for text in ONE_TERM_EDGES)
    others = (
        "object_prefix:car score > 0.5",
        "NOT object_prefix:car",
        "(score > 1)",
        "a:",
        'training_set = "model_v2"*',  # a syntax error: the parser says where
        "not:car",
    )
    for text in others:
        assert _one_term(text) is None, text
