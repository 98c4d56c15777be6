"""The binding pass on its own: which labels each attribute group binds to."""

from __future__ import annotations

from search import parse, render
from search.binding import (
    EVERYTHING,
    NOTHING,
    AllOf,
    AnyOf,
    AtLeast,
    Exists,
    ItemTest,
    NoneOf,
    Plan,
    bind,
    is_attribute_only,
)
from store.schema import IMAGE_PREDICTIONS, OBJECT_PREDICTIONS, PREDICTION_PATHS


def _exists(plan: Plan) -> list[Exists]:
    match plan:
        case Exists():
            return [plan]
        case ItemTest() | AtLeast():
            return []
        case AllOf(parts) | AnyOf(parts):
            return [leaf for part in parts for leaf in _exists(part)]
        case NoneOf(part):
            return _exists(part)


def _summary(text: str) -> list[tuple[str | None, list[str]]]:
    """(label or None, rendered conditions) for every Exists leaf, in order."""
    return [
        (render(leaf.label) if leaf.label else None, [render(c) for c in leaf.conditions])
        for leaf in _exists(bind(parse(text)))
    ]


def test_score_binds_to_the_label() -> None:
    assert _summary("object_prefix:car AND score < 0.5") == [("object_prefix:car", ["score < 0.5"])]


def test_score_binds_to_every_label_through_or() -> None:
    assert _summary("(image_prefix:rain OR image_prefix:snow) AND score >= 0.5") == [
        ("image_prefix:rain", ["score >= 0.5"]),
        ("image_prefix:snow", ["score >= 0.5"]),
    ]


def test_score_binds_to_every_label_of_the_and() -> None:
    assert _summary("image_prefix:a AND object_prefix:b AND score > 0.6") == [
        ("image_prefix:a", ["score > 0.6"]),
        ("object_prefix:b", ["score > 0.6"]),
    ]


def test_parentheses_scope_binding() -> None:
    assert _summary("image_prefix:a AND (object_prefix:b AND score > 0.3)") == [
        ("image_prefix:a", []),
        ("object_prefix:b", ["score > 0.3"]),
    ]


def test_negated_attribute_binds_whole() -> None:
    assert _summary("image_prefix:a AND NOT score < 0") == [("image_prefix:a", ["NOT score < 0"])]


def test_not_blocks_binding() -> None:
    plan = bind(parse("NOT image_prefix:weather_clear AND score >= 0.9"))
    assert isinstance(plan, AllOf)
    negated, unbound = plan.parts
    assert isinstance(negated, NoneOf)
    assert isinstance(unbound, Exists)
    assert unbound.label is None
    assert unbound.paths == PREDICTION_PATHS


def test_binding_restarts_inside_not() -> None:
    assert _summary("NOT (image_prefix:weather_clear AND score >= 0.5)") == [
        ("image_prefix:weather_clear", ["score >= 0.5"])
    ]


def test_outer_and_inner_groups_accumulate() -> None:
    assert _summary("(image_prefix:a AND score > 0.5) AND status = accepted") == [
        ("image_prefix:a", ["status = accepted", "score > 0.5"])
    ]


def test_unbound_group_is_one_unit() -> None:
    assert _summary("dataset = x AND score >= 0.9 AND status = accepted") == [
        (None, ["score >= 0.9", "status = accepted"])
    ]


def test_or_with_attribute_leaves_it_unbound() -> None:
    assert _summary("image_prefix:a OR score >= 0.9") == [
        ("image_prefix:a", []),
        (None, ["score >= 0.9"]),
    ]


def test_attribute_under_or_is_not_bound_by_the_outer_and() -> None:
    assert _summary("(image_prefix:a OR score > 0.9) AND status = accepted") == [
        ("image_prefix:a", ["status = accepted"]),
        (None, ["score > 0.9"]),
    ]


def test_mixed_group_does_not_bind() -> None:
    assert _summary("image_prefix:a AND (score > 0.5 OR dataset = x)") == [
        ("image_prefix:a", []),
        (None, ["score > 0.5"]),
    ]


def test_item_fields_never_bind() -> None:
    plan = bind(parse("object_prefix:car AND dataset = train"))
    assert isinstance(plan, AllOf)
    assert isinstance(plan.parts[1], ItemTest)
    assert _summary("object_prefix:car AND dataset = train") == [("object_prefix:car", [])]


def test_rejected_visibility_follows_status_mentions() -> None:
    def visible(text: str) -> list[bool]:
        return [leaf.include_rejected for leaf in _exists(bind(parse(text)))]

    assert visible("object_prefix:car") == [False]
    assert visible("object_prefix:car AND score > 0.5") == [False]
    assert visible("object_prefix:car AND status = rejected") == [True]
    assert visible("object_prefix:car AND NOT status = accepted") == [True]
    assert visible("status = rejected") == [True]
    assert visible("object_prefix:car OR status = rejected") == [False, True]


def test_label_paths() -> None:
    leaves = _exists(bind(parse("image_prefix:a object_prefix:b")))
    assert [leaf.paths for leaf in leaves] == [(IMAGE_PREDICTIONS,), (OBJECT_PREDICTIONS,)]


def test_is_attribute_only() -> None:
    assert is_attribute_only(parse("score > 1 OR NOT (status = pending AND model = m)"))
    assert not is_attribute_only(parse("score > 1 OR dataset = d"))
    assert not is_attribute_only(parse("image_prefix:a"))


def _count(text: str) -> Plan:
    return bind(parse(text))


def _at_least(plan: Plan) -> tuple[tuple[str, ...], int, bool]:
    assert isinstance(plan, AtLeast), plan
    return plan.paths, plan.number, plan.include_rejected


def test_count_operators_are_written_with_at_least() -> None:
    cars = "count(object_prefix:car)"
    objects = (OBJECT_PREDICTIONS,)
    assert _at_least(_count(f"{cars} >= 3")) == (objects, 3, False)
    assert _at_least(_count(f"{cars} > 3")) == (objects, 4, False)
    below = _count(f"{cars} < 3")
    assert isinstance(below, NoneOf)
    assert _at_least(below.part) == (objects, 3, False)
    at_most = _count(f"{cars} <= 3")
    assert isinstance(at_most, NoneOf)
    assert _at_least(at_most.part) == (objects, 4, False)
    exactly = _count(f"{cars} = 3")
    assert isinstance(exactly, AllOf)
    low, high = exactly.parts
    assert _at_least(low) == (objects, 3, False)
    assert isinstance(high, NoneOf)
    assert _at_least(high.part) == (objects, 4, False)
    other = _count(f"{cars} != 3")
    assert isinstance(other, AnyOf)
    fewer, more = other.parts
    assert isinstance(fewer, NoneOf)
    assert _at_least(fewer.part) == (objects, 3, False)
    assert _at_least(more) == (objects, 4, False)


def test_counts_of_zero_need_no_always_true_clause() -> None:
    cars = "count(object_prefix:car)"
    none = _count(f"{cars} = 0")
    assert isinstance(none, NoneOf)
    assert _at_least(none.part)[1] == 1
    assert _at_least(_count(f"{cars} != 0"))[1] == 1
    assert _at_least(_count(f"{cars} > 0"))[1] == 1
    assert _count(f"{cars} >= 0") == EVERYTHING
    assert _count(f"{cars} < 0") == NOTHING
    assert _count(f"{cars} <= 0") == _count(f"{cars} = 0")


def test_count_paths_follow_the_labels_inside() -> None:
    assert _at_least(_count("count(image_prefix:weather) > 1"))[0] == (IMAGE_PREDICTIONS,)
    assert _at_least(_count("count(NOT object_prefix:car) > 1"))[0] == (OBJECT_PREDICTIONS,)
    assert _at_least(_count("count(score > 0.5) > 1"))[0] == PREDICTION_PATHS
    assert _at_least(_count("count(box_area < 9) > 1"))[0] == (OBJECT_PREDICTIONS,)
    assert _at_least(_count("count(score > 0.5 OR box_area < 9) > 1"))[0] == (OBJECT_PREDICTIONS,)


def test_counts_see_rejected_predictions_only_when_the_inside_mentions_status() -> None:
    assert not _at_least(_count("count(object_prefix:car) > 1"))[2]
    assert _at_least(_count("count(object_prefix:car AND NOT status = pending) > 1"))[2]
    # status outside the count is another condition; it does not reach inside.
    plan = _count("count(object_prefix:car) > 1 AND status = rejected")
    assert isinstance(plan, AllOf)
    assert not _at_least(plan.parts[0])[2]


def test_attributes_outside_a_count_do_not_bind_into_it() -> None:
    assert _summary("count(object_prefix:car) > 1 AND score > 0.5") == [(None, ["score > 0.5"])]


def test_tagged_by_never_binds() -> None:
    plan = bind(parse("object_prefix:car AND tagged_by = model_v3 AND score > 0.5"))
    assert isinstance(plan, AllOf)
    assert [type(part) for part in plan.parts] == [Exists, ItemTest]
    assert _summary("object_prefix:car AND tagged_by = model_v3 AND score > 0.5") == [
        ("object_prefix:car", ["score > 0.5"])
    ]


def test_box_geometry_binds_to_object_labels_and_unbound_looks_at_objects() -> None:
    assert _summary("object_prefix:car AND box_area < 1024") == [
        ("object_prefix:car", ["box_area < 1024"])
    ]
    [leaf] = _exists(bind(parse("NOT box_area < 10")))
    assert leaf.paths == (OBJECT_PREDICTIONS,)
    [leaf] = _exists(bind(parse("score > 0.5 AND relative_area < 0.01")))
    assert leaf.paths == (OBJECT_PREDICTIONS,)
    [leaf] = _exists(bind(parse("score > 0.5")))
    assert leaf.paths == PREDICTION_PATHS
