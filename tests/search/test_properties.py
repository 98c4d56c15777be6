"""Properties: render/parse round trips, and no input escapes the QueryError family."""

from __future__ import annotations

from typing import assert_never

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from search import QueryError, evaluate, parse, render, translate
from search.ast import And, Comparison, Count, Label, Node, Not, Or, Similar
from store import schema as f
from store.documents import prepare_item
from tests.search.strategies import any_trees, items, small_trees

# Fragments that make random text look like queries, so it gets past the first token.
_FRAGMENTS = [
    "image_prefix:", "object_prefix:", "score", "status", "dataset", "uploaded_at",
    "metadata.x", "training_set", "AND", "and", "OR", "NOT", "not", "(", ")", "=", "!=", "<",
    "<=", ">", ">=", ":", '"', "\\", "*", "car", "car*", "*car", "0.5", "-1", "1e3", "high",
    "2024-01-31", "2024-01-31T10:00:00Z", "pending", " ", " ", "\n", "'", "&&", "!", "#",
]  # fmt: skip
query_like_text = st.lists(st.sampled_from(_FRAGMENTS), max_size=12).map("".join)


@settings(max_examples=500, deadline=None)
@given(any_trees())
def test_parse_render_round_trip(tree: Node) -> None:
    text = render(tree)
    assert parse(text) == tree
    assert render(parse(text)) == text


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=40), query_like_text))
def test_random_text_raises_only_query_errors(text: str) -> None:
    error: QueryError | None = None
    try:
        tree = parse(text)
    except QueryError as caught:
        error = caught
    if error is None:
        translate(tree, inner_hits=True)
        assert parse(render(tree)) == tree
        return
    assert 0 <= error.start <= error.end <= len(text)
    assert error.query == text
    assert error.render().startswith("error: ")
    assert "unexpected the" not in error.message


def _mentions_status(node: Node) -> bool:
    match node:
        case Comparison(field=field):
            return field == f.PRED_STATUS
        case Label() | Similar():
            return False
        case Not(operand) | Count(condition=operand):
            return _mentions_status(operand)
        case And(operands) | Or(operands):
            return any(_mentions_status(child) for child in operands)
        case _:
            assert_never(node)


@settings(max_examples=300, deadline=None)
@given(small_trees(), items("x"))
def test_queries_without_status_cannot_see_rejected_predictions(
    tree: Node, item: dict[str, object]
) -> None:
    # Also runs the evaluator on every generated pair, so it must be total over them.
    assume(not _mentions_status(tree))
    document = prepare_item(item)
    without_rejected = {
        key: [p for p in value if p[f.PRED_STATUS] != f.PredictionStatus.REJECTED]
        if key in f.PREDICTION_PATHS
        else value
        for key, value in document.items()
    }
    assert evaluate(tree, document) == evaluate(tree, without_rejected)
