"""Saved slices in the language: resolution through a lookup, binding across the slice
boundary, the reference substitution, and the text helpers the service uses."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from search import (
    QueryError,
    SliceCycleError,
    UnknownSliceError,
    dependants,
    evaluate,
    parse,
    rename_references,
    render,
    slice_references,
    translate,
    used_slices,
)
from store.documents import prepare_item
from tests.search.strategies import sliced_queries, substitute

SLICES = {
    "cars": "object_prefix:car",
    "confident_cars": "slice = cars AND score >= 0.8",
    "night": "image_prefix:time_of_day_night",
    "night_cars": 'slice = "night" AND slice = confident_cars',
}


def _item(item_id: str, *objects: tuple[str, float]) -> dict[str, Any]:
    bbox = {"x1": 0, "y1": 0, "x2": 10, "y2": 10}
    predictions = [{"label": label, "score": score, "bbox": bbox} for label, score in objects]
    return prepare_item({"item_id": item_id, "object_predictions": predictions})


def test_a_slice_binds_like_a_parenthesised_group() -> None:
    sliced = parse("slice = cars AND score >= 0.8", slices=SLICES)
    assert sliced == parse("(object_prefix:car) AND score >= 0.8")
    # The score binds to the car inside the slice: one prediction must be both.
    confident_car = _item("a", ("car", 0.9))
    unsure_car_confident_person = _item("b", ("car", 0.5), ("pedestrian", 0.9))
    assert evaluate(sliced, confident_car)
    assert not evaluate(sliced, unsure_car_confident_person)


def test_a_slice_keeps_its_own_grouping() -> None:
    or_slice = {"either": "object_prefix:car OR object_prefix:bus"}
    tree = parse("slice = either AND score >= 0.8", slices=or_slice)
    # Not `car OR (bus AND score >= 0.8)`: the slice is one operand of the AND.
    assert tree == parse("(object_prefix:car OR object_prefix:bus) AND score >= 0.8")
    assert render(tree) == "(object_prefix:car OR object_prefix:bus) AND score >= 0.8"
    assert not evaluate(tree, _item("c", ("car", 0.1), ("bus", 0.1)))


def test_slices_inside_slices_resolve() -> None:
    tree = parse("slice = night_cars", slices=SLICES)
    assert tree == parse("image_prefix:time_of_day_night AND (object_prefix:car AND score >= 0.8)")


def test_every_node_of_an_expansion_points_at_the_term() -> None:
    query = "dataset = a AND slice = night_cars"
    tree = parse(query, slices=SLICES)
    term = tree.operands[1]  # type: ignore[union-attr]
    assert (term.span.start, term.span.end) == (16, len(query))


def test_names_are_exact_and_unknown_ones_get_a_suggestion() -> None:
    with pytest.raises(UnknownSliceError) as caught:
        parse("slice = Cars", slices=SLICES)
    assert caught.value.hint == "did you mean `cars`?"
    assert (caught.value.start, caught.value.end) == (0, 12)


def test_a_slice_using_itself_is_a_cycle() -> None:
    with pytest.raises(SliceCycleError) as caught:
        parse("object_prefix:car OR slice = me", slices={"me": "dataset = x OR slice = me"})
    assert "`me` -> `me`" in caught.value.message
    assert (caught.value.start, caught.value.end) == (21, 31)


def test_without_a_lookup_every_slice_is_unknown() -> None:
    with pytest.raises(UnknownSliceError):
        parse("slice = cars")


def test_the_word_slice_inside_a_value_is_text() -> None:
    tree = parse('dataset = "slice = cars"')
    assert evaluate(tree, prepare_item({"item_id": "x", "dataset": "slice = cars"}))
    assert slice_references('dataset = "slice = cars"') == []


def test_references_used_slices_and_dependants() -> None:
    assert slice_references('slice = a AND (SLICE = "b c" OR slice = a) OR slice != d') == [
        "a",
        "b c",
    ]
    assert used_slices("slice = night_cars", SLICES) == {
        name: SLICES[name] for name in ("cars", "confident_cars", "night", "night_cars")
    }
    assert used_slices("slice = nowhere", SLICES) == {}
    assert dependants("cars", SLICES) == ["confident_cars", "night_cars"]
    assert dependants("night_cars", SLICES) == []


def test_rename_rewrites_only_slice_terms() -> None:
    text = 'slice = cars AND dataset = cars OR slice="cars" AND metadata.x = "slice = cars"'
    renamed = rename_references(text, "cars", "autos v2")
    assert renamed == (
        'slice = "autos v2" AND dataset = cars OR slice="autos v2" AND metadata.x = "slice = cars"'
    )
    assert slice_references(renamed) == ["autos v2"]


def test_translation_is_that_of_the_written_out_text() -> None:
    query = "slice = confident_cars OR NOT slice = night"
    written_out = "(object_prefix:car AND score >= 0.8) OR NOT (image_prefix:time_of_day_night)"
    assert translate(parse(query, slices=SLICES)) == translate(parse(written_out))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sliced_queries())
def test_a_slice_means_its_text_in_parentheses(case: tuple[dict[str, str], str]) -> None:
    slices, query = case
    try:
        expected = parse(substitute(query, slices))
    except QueryError:
        # Too deep once written out, or box geometry bound to an image label: the sliced
        # query is refused too.
        with pytest.raises(QueryError):
            parse(query, slices=slices)
        return
    tree = parse(query, slices=slices)
    assert tree == expected
    # The canonical text is the expansion: it needs no slices to be read back.
    assert parse(render(tree)) == tree
