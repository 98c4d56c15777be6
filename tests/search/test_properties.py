"""Properties: render/parse round trips, and no input escapes the QueryError family."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from search import QueryError, evaluate, parse, render, translate
from search.ast import Node
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


@settings(max_examples=200, deadline=None)
@given(small_trees(), items("x"))
def test_evaluate_is_total(tree: Node, item: dict[str, object]) -> None:
    assert evaluate(tree, prepare_item(item)) in (True, False)
