"""Hypothesis strategies: query trees (general, and small-vocabulary ones that hit a corpus)
and item documents with the awkward cases the semantics care about."""

from __future__ import annotations

import random
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from hypothesis import strategies as st

from search.ast import (
    And,
    Band,
    Comparison,
    Count,
    Instant,
    Label,
    Node,
    Not,
    Number,
    Op,
    Or,
    ScoreBand,
    Text,
    Value,
)
from search.binding import bind
from search.errors import QueryError
from search.fields import (
    ATTRIBUTES,
    DAY_MS,
    ITEM_FIELDS,
    MAX_EPOCH_MS,
    MIN_EPOCH_MS,
    OBJECT_ONLY_ATTRIBUTES,
    ValueType,
)
from search.render import render
from store import schema as f
from store.schema import PredictionKind, PredictionStatus

EQUALITY = [Op.EQ, Op.NE]
ALL_OPS = list(Op)

# --- a small world, so that random queries and random documents meet -----------------------
IMAGE_LABELS = ["weather_clear", "weather_rain", "weather_snow", "scene_highway", "time_of_day"]
OBJECT_LABELS = ["car", "car_suv", "cargo_ship", "pedestrian", "traffic_sign", "traffic light"]
QUERY_LABELS = [
    "weather", "weather_clear", "weather_rain", "scene", "time_of_day", "time", "car",
    "car_suv", "cargo", "cargo_ship", "pedestrian", "traffic", "traffic_sign", "traffic light",
    "weather_", "ca",
]  # fmt: skip
SCORES = [-1.0, -0.5, -0.01, 0.0, 0.2, 0.49, 0.5, 0.65, 0.8, 0.95, 1.0]
QUERY_SCORES = [*SCORES, 0.3, 0.75, 0.9, -0.2, 0, 1]
TRAINING_SETS = ["model_v1", "model_v2"]
TAGGED_BY = [*TRAINING_SETS, "model_v3"]
TRUTH_SOURCES = ["coco_val", "team"]
# Box corners on a coarse grid, so that random boxes meet the query thresholds below.
BOX_COORDINATES = [0, 10, 16, 32, 50, 100]
GEOMETRY_VALUES: dict[str, list[int | float]] = {
    f.PRED_BOX_WIDTH: [0, 10, 16, 22, 32, 50, 90],
    f.PRED_BOX_HEIGHT: [0, 10, 16, 22, 32, 50, 90],
    f.PRED_BOX_AREA: [0, 100, 256, 1024, 1600, 2500, 9000],
    f.PRED_RELATIVE_AREA: [0, 0.0001, 0.001, 0.005, 0.01, 0.05, 0.5, 1],
}
# The small sizes make boxes that reach past the image (relative_area capped at 1).
WIDTHS = [64, 320, 640, 1000, 1024, 1920]
HEIGHTS = [48, 240, 480, 1080]
THUMBNAIL = (64, 48)
MODELS = ["clip", "yolo"]
DATASETS = ["train", "val", "test"]
CAMERAS = ["front", "rear", "rear left"]
BASE_DAY = datetime(2024, 1, 1, tzinfo=UTC)
BASE_MS = int(BASE_DAY.timestamp() * 1000)


def _truth_flag() -> st.SearchStrategy[bool]:
    """A quarter of the labels name ground truth."""
    return st.integers(0, 3).map(lambda n: n == 0)


def small_label() -> st.SearchStrategy[Label]:
    return st.builds(
        Label,
        st.sampled_from(list(PredictionKind)),
        st.sampled_from(QUERY_LABELS),
        st.booleans(),
        truth=_truth_flag(),
    )


def _small_value(field: str, op: Op) -> st.SearchStrategy[Value]:
    match field:
        case f.PRED_SCORE:
            numbers = st.sampled_from(QUERY_SCORES).map(Number)
            if op.is_ordering:
                return numbers
            return numbers | st.sampled_from(list(Band)).map(ScoreBand)
        case f.PRED_TRAINING_SET:
            return st.sampled_from(TRAINING_SETS).map(Text)
        case f.PRED_MODEL:
            return st.sampled_from(MODELS).map(Text)
        case f.PRED_BOX_WIDTH | f.PRED_BOX_HEIGHT | f.PRED_BOX_AREA | f.PRED_RELATIVE_AREA:
            return st.sampled_from(GEOMETRY_VALUES[field]).map(Number)
        case f.TAGGED_BY:
            return st.sampled_from(TAGGED_BY).map(Text)
        case f.TRUTH_SOURCE:
            return st.sampled_from(TRUTH_SOURCES).map(Text)
        case f.PRED_STATUS:
            return st.sampled_from([s.value for s in PredictionStatus]).map(Text)
        case f.AUTOTAG_STATUS:
            return st.sampled_from(["pending", "reviewed", "accepted"]).map(Text)
        case f.DATASET:
            return st.sampled_from(DATASETS).map(Text)
        case f.WIDTH | f.HEIGHT:
            return st.sampled_from([64, 320, 640, 1000, 1024, 1920]).map(Number)
        case f.UPLOADED_AT:
            days = st.integers(0, 4).map(lambda d: Instant(BASE_MS + d * DAY_MS, True))
            moments = st.integers(0, 4 * DAY_MS).map(
                lambda ms: Instant(BASE_MS + ms - ms % 3_600_000, False)
            )
            return days | moments
        case "metadata.camera":
            return st.sampled_from(CAMERAS).map(Text)
        case "metadata.frame":
            return st.sampled_from([0, 3, 5, 7.5, 10]).map(Number)
        case "metadata.exposure":
            return st.sampled_from([0.1, 0.25, 0.5, 1]).map(Number)
    raise AssertionError(field)


SMALL_FIELDS = [
    *ATTRIBUTES,
    f.AUTOTAG_STATUS,
    f.DATASET,
    f.TAGGED_BY,
    f.TRUTH_SOURCE,
    f.WIDTH,
    f.UPLOADED_AT,
    "metadata.camera",
    "metadata.frame",
    "metadata.exposure",
]
_ORDERED = {
    f.PRED_SCORE,
    *f.BOX_GEOMETRY,
    f.WIDTH,
    f.UPLOADED_AT,
    "metadata.frame",
    "metadata.exposure",
}


@st.composite
def small_comparison(draw: st.DrawFn, fields: list[str] = SMALL_FIELDS) -> Comparison:
    field = draw(st.sampled_from(fields))
    op = draw(st.sampled_from(ALL_OPS if field in _ORDERED else EQUALITY))
    return Comparison(field, op, draw(_small_value(field, op)))


def small_attribute() -> st.SearchStrategy[Comparison]:
    return small_comparison(list(ATTRIBUTES))


def trees(leaves: st.SearchStrategy[Node], depth: int, width: int = 3) -> st.SearchStrategy[Node]:
    """Trees over ``leaves`` at most ``depth`` operators deep, ``width`` operands wide."""
    if depth == 0:
        return leaves
    child = trees(leaves, depth - 1, width)
    return st.one_of(
        leaves,
        child.map(Not),
        st.lists(child, min_size=2, max_size=width).map(lambda c: And(tuple(c))),
        st.lists(child, min_size=2, max_size=width).map(lambda c: Or(tuple(c))),
    )


def binds(tree: Node) -> bool:
    """The tree is a query (box geometry never binds to an image label)."""
    try:
        bind(tree)
    except QueryError:
        return False
    return True


@st.composite
def counts(
    draw: st.DrawFn,
    labels: st.SearchStrategy[Label],
    attribute: st.SearchStrategy[Comparison],
    numbers: st.SearchStrategy[int],
) -> Count:
    """``count(...) op n`` with a valid inside: labels of one kind (or none) and attributes."""
    kind = draw(st.sampled_from([*PredictionKind, None]))
    leaves: st.SearchStrategy[Node] = attribute
    if kind is PredictionKind.IMAGE:
        leaves = attribute.filter(lambda c: c.field not in OBJECT_ONLY_ATTRIBUTES)
    if kind is not None and draw(_truth_flag()):  # a count of truth: its labels only
        leaves = labels.map(lambda label: replace(label, kind=kind, truth=True))
    elif kind is not None:
        leaves = labels.map(lambda label: replace(label, kind=kind, truth=False)) | leaves
    condition = draw(trees(leaves, depth=2))
    return Count(condition, draw(st.sampled_from(ALL_OPS)), draw(numbers))


def small_counts() -> st.SearchStrategy[Count]:
    return counts(small_label(), small_attribute(), st.integers(0, 4))


@st.composite
def ranked_counts(draw: st.DrawFn) -> Count:
    """Counts in the shape the translator reads from ``count_ranks``: labels (some of which
    continue others, which it must not read that way), each with at most a one-sided score bound
    and a training set, OR-ed."""
    kind = draw(st.sampled_from(list(PredictionKind)))
    groups: list[Node] = []
    for _ in range(draw(st.integers(1, 3))):
        parts: list[Node] = [Label(kind, draw(st.sampled_from(QUERY_LABELS)))]
        if draw(st.booleans()):
            op = draw(st.sampled_from([Op.GE, Op.GT, Op.LE, Op.LT]))
            parts.append(Comparison(f.PRED_SCORE, op, Number(draw(st.sampled_from(QUERY_SCORES)))))
        if draw(st.booleans()):
            training_set = draw(st.sampled_from(TRAINING_SETS))
            parts.append(Comparison(f.PRED_TRAINING_SET, Op.EQ, Text(training_set)))
        parts = draw(st.permutations(parts))
        groups.append(parts[0] if len(parts) == 1 else And(tuple(parts)))
    condition = groups[0] if len(groups) == 1 else Or(tuple(groups))
    return Count(condition, draw(st.sampled_from(ALL_OPS)), draw(st.integers(0, 4)))


def small_trees(depth: int = 3) -> st.SearchStrategy[Node]:
    """Queries over the small world; attributes are frequent so binding is exercised."""
    round_two = small_comparison([f.TAGGED_BY, *f.BOX_GEOMETRY])  # coverage and geometry
    leaves = st.one_of(
        small_label(),
        small_attribute(),
        small_comparison(),
        small_counts(),
        ranked_counts(),
        round_two,
    )
    return trees(leaves, depth=depth).filter(binds)


# --- the general tree: any value the parser can produce --------------------------------------
_KEY = st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,8}", fullmatch=True)
_TEXT = st.text(min_size=0, max_size=12)
_FLOATS = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def _any_value(
    kind: ValueType, op: Op, bounds: tuple[float, float] | None
) -> st.SearchStrategy[Value]:
    if bounds is not None:  # box geometry: the values a box can have
        low, high = bounds[0], min(bounds[1], 1e6)
        whole = st.integers(int(low), int(high))
        return (whole | st.floats(low, high, allow_nan=False)).map(Number)
    match kind:
        case ValueType.SCORE:
            numbers = (st.integers(-1000, 1000) | _FLOATS).map(Number)
            if op.is_ordering:
                return numbers
            return numbers | st.sampled_from(list(Band)).map(ScoreBand)
        case ValueType.NUMBER:
            return (st.integers(-1000, 10**6) | _FLOATS).map(Number)
        case ValueType.INTEGER:
            return st.integers(-(2**31), 2**31 - 1).map(Number)
        case ValueType.TEXT:
            return _TEXT.map(Text)
        case ValueType.DATE:
            first_day, last_day = MIN_EPOCH_MS // DAY_MS, MAX_EPOCH_MS // DAY_MS
            days = st.integers(first_day, last_day).map(lambda d: Instant(d * DAY_MS, True))
            millis = st.integers(MIN_EPOCH_MS, MAX_EPOCH_MS)
            return days | millis.map(lambda ms: Instant(ms, False))
        case ValueType.DYNAMIC:
            numbers = (st.integers(-(10**15), 10**15) | _FLOATS).map(Number)
            return numbers if op.is_ordering else numbers | _TEXT.map(Text)
        case ValueType.ENUM:
            raise AssertionError("enums are drawn from their choices")


@st.composite
def any_comparison(draw: st.DrawFn) -> Comparison:
    specs = {**ATTRIBUTES, **ITEM_FIELDS}
    name = draw(st.sampled_from([*specs, "metadata"]))
    bounds = None
    if name == "metadata":
        key = draw(st.lists(_KEY, min_size=1, max_size=2).map(".".join))
        field, kind = f"metadata.{key}", ValueType.DYNAMIC
    else:
        field, kind, bounds = name, specs[name].type, specs[name].bounds
    ordered = kind in (
        ValueType.SCORE,
        ValueType.NUMBER,
        ValueType.INTEGER,
        ValueType.DATE,
        ValueType.DYNAMIC,
    )
    op = draw(st.sampled_from(ALL_OPS if ordered else EQUALITY))
    if kind is ValueType.ENUM:
        return Comparison(field, op, Text(draw(st.sampled_from(specs[name].choices))))
    return Comparison(field, op, draw(_any_value(kind, op, bounds)))


def any_label() -> st.SearchStrategy[Label]:
    return st.builds(
        Label,
        st.sampled_from(list(PredictionKind)),
        st.text(min_size=1, max_size=12),
        st.booleans(),
        truth=_truth_flag(),
    )


def any_attribute() -> st.SearchStrategy[Comparison]:
    return any_comparison().filter(lambda c: c.field in ATTRIBUTES)


def any_trees() -> st.SearchStrategy[Node]:
    any_count = counts(any_label(), any_attribute(), st.integers(0, 2**31 - 1))
    return trees(st.one_of(any_label(), any_comparison(), any_count), depth=4).filter(binds)


# --- documents -------------------------------------------------------------------------------
def coverage(item: dict[str, Any], extra: list[str]) -> list[str]:
    """``tagged_by``: the training sets that predicted something, and ``extra`` ones, which may
    have predicted nothing (``model_v3`` never predicts)."""
    predicted = {p[f.PRED_TRAINING_SET] for path in f.PREDICTION_PATHS for p in item[path]}
    return sorted(predicted | set(extra))


def stored(document: dict[str, Any], drop_empty: bool) -> dict[str, Any]:
    """A prepared document, with its empty prediction lists left out when ``drop_empty``: an
    item written without predictions has no list at all, one whose list emptied has ``[]``."""
    if drop_empty:
        for path in f.PREDICTION_PATHS:
            if not document.get(path):
                document.pop(path, None)
    return document


@st.composite
def predictions(draw: st.DrawFn, labels: list[str], with_box: bool) -> dict[str, Any]:
    prediction: dict[str, Any] = {
        f.PRED_LABEL: draw(st.sampled_from(labels)),
        f.PRED_TRAINING_SET: draw(st.sampled_from(TRAINING_SETS)),
        f.PRED_MODEL: draw(st.sampled_from(MODELS)),
        f.PRED_STATUS: draw(st.sampled_from([s.value for s in PredictionStatus])),
    }
    if draw(st.integers(0, 9)) > 0:
        prediction[f.PRED_SCORE] = draw(st.sampled_from(SCORES))
    if prediction[f.PRED_STATUS] == PredictionStatus.MODIFIED:
        prediction[f.PRED_ORIGINAL_LABEL] = draw(st.sampled_from(labels))
    if with_box and draw(st.integers(0, 4)) > 0:
        corners = draw(st.lists(st.sampled_from(BOX_COORDINATES), min_size=4, max_size=4))
        prediction[f.PRED_BBOX] = dict(zip(("x1", "y1", "x2", "y2"), corners, strict=True))
    return prediction


@st.composite
def items(draw: st.DrawFn, item_id: str) -> dict[str, Any]:
    item: dict[str, Any] = {f.ITEM_ID: item_id}
    bare = draw(st.integers(0, 7)) == 0  # no predictions at all
    for path, labels, most in (
        (f.IMAGE_PREDICTIONS, IMAGE_LABELS, 3),
        (f.OBJECT_PREDICTIONS, OBJECT_LABELS, 5),
    ):
        with_box = path == f.OBJECT_PREDICTIONS
        item[path] = [] if bare else draw(st.lists(predictions(labels, with_box), max_size=most))
    if draw(st.booleans()):
        item[f.DATASET] = draw(st.sampled_from(DATASETS))
    if draw(st.booleans()):
        item[f.WIDTH] = draw(st.sampled_from(WIDTHS))
    if draw(st.booleans()):
        item[f.HEIGHT] = draw(st.sampled_from(HEIGHTS))
    if draw(st.integers(0, 9)) == 0:
        item[f.WIDTH], item[f.HEIGHT] = THUMBNAIL
    if draw(st.integers(0, 4)) > 0:
        extra = draw(st.lists(st.sampled_from(TAGGED_BY), max_size=2, unique=True))
        item[f.TAGGED_BY] = coverage(item, extra)
    if draw(st.booleans()):
        sources = draw(st.lists(st.sampled_from(TRUTH_SOURCES), max_size=2, unique=True))
        item[f.TRUTH_SOURCE] = sources
        for path, labels in ((f.TRUTH_IMAGES, IMAGE_LABELS), (f.TRUTH_OBJECTS, OBJECT_LABELS)):
            item[path] = [
                {f.PRED_LABEL: label, f.ANNOTATION_SOURCE: source}
                for label, source in draw(
                    st.lists(
                        st.tuples(st.sampled_from(labels), st.sampled_from(sources)), max_size=3
                    )
                    if sources
                    else st.just([])
                )
            ]
    if draw(st.integers(0, 4)) > 0:
        offset = draw(st.integers(0, 5 * DAY_MS // 60_000)) * 60_000
        moment = BASE_DAY + timedelta(milliseconds=offset)
        item[f.UPLOADED_AT] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    metadata: dict[str, Any] = {}
    if draw(st.booleans()):
        metadata["camera"] = draw(st.sampled_from(CAMERAS))
    if draw(st.booleans()):
        metadata["frame"] = draw(st.integers(0, 10))
    if draw(st.booleans()):
        metadata["exposure"] = draw(st.sampled_from([0.1, 0.25, 0.5, 1.0]))
    if metadata:
        item[f.METADATA] = metadata
    return item


def random_item(rng: random.Random, item_id: str) -> dict[str, Any]:
    """The same distribution as :func:`items`, from a seeded generator (for a fixed corpus)."""

    def prediction(labels: list[str], with_box: bool = False) -> dict[str, Any]:
        status = rng.choice([s.value for s in PredictionStatus])
        result: dict[str, Any] = {
            f.PRED_LABEL: rng.choice(labels),
            f.PRED_TRAINING_SET: rng.choice(TRAINING_SETS),
            f.PRED_MODEL: rng.choice(MODELS),
            f.PRED_STATUS: status,
        }
        if rng.random() < 0.9:
            result[f.PRED_SCORE] = rng.choice(SCORES)
        if status == PredictionStatus.MODIFIED:
            result[f.PRED_ORIGINAL_LABEL] = rng.choice(labels)
        if with_box and rng.random() < 0.8:
            corners = [rng.choice(BOX_COORDINATES) for _ in range(4)]
            result[f.PRED_BBOX] = dict(zip(("x1", "y1", "x2", "y2"), corners, strict=True))
        return result

    bare = rng.random() < 0.125  # no predictions at all
    item: dict[str, Any] = {
        f.ITEM_ID: item_id,
        f.IMAGE_PREDICTIONS: [
            prediction(IMAGE_LABELS) for _ in range(0 if bare else rng.randint(0, 3))
        ],
        f.OBJECT_PREDICTIONS: [
            prediction(OBJECT_LABELS, with_box=True)
            for _ in range(0 if bare else rng.randint(0, 5))
        ],
    }
    if rng.random() < 0.5:
        item[f.DATASET] = rng.choice(DATASETS)
    if rng.random() < 0.5:
        item[f.WIDTH] = rng.choice(WIDTHS)
    if rng.random() < 0.5:
        item[f.HEIGHT] = rng.choice(HEIGHTS)
    if rng.random() < 0.1:
        item[f.WIDTH], item[f.HEIGHT] = THUMBNAIL
    if rng.random() < 0.8:
        item[f.TAGGED_BY] = coverage(item, rng.sample(TAGGED_BY, rng.randint(0, 2)))
    if rng.random() < 0.6:
        sources = rng.sample(TRUTH_SOURCES, rng.randint(0, 2))
        item[f.TRUTH_SOURCE] = sources
        for path, labels in ((f.TRUTH_IMAGES, IMAGE_LABELS), (f.TRUTH_OBJECTS, OBJECT_LABELS)):
            item[path] = [
                {f.PRED_LABEL: rng.choice(labels), f.ANNOTATION_SOURCE: rng.choice(sources)}
                for _ in range(rng.randint(0, 3) if sources else 0)
            ]
    if rng.random() < 0.8:
        moment = BASE_DAY + timedelta(minutes=rng.randint(0, 5 * 24 * 60))
        item[f.UPLOADED_AT] = moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    metadata: dict[str, Any] = {}
    if rng.random() < 0.5:
        metadata["camera"] = rng.choice(CAMERAS)
    if rng.random() < 0.5:
        metadata["frame"] = rng.randint(0, 10)
    if rng.random() < 0.5:
        metadata["exposure"] = rng.choice([0.1, 0.25, 0.5, 1.0])
    if metadata:
        item[f.METADATA] = metadata
    return item


# --- saved slices ------------------------------------------------------------------------------
SLICE_NAMES = ["s0", "s1", "s2", "s3"]
_SLICE_TERM = re.compile(r'slice = "(s\d)"')


@cache
def _sliced_text(names: tuple[str, ...]) -> st.SearchStrategy[str]:
    """Query text mixing parenthesised small trees and ``slice = "sN"`` terms over ``names``.

    Built once per ``names``: Hypothesis validates a new strategy on every use.
    """
    leaf = small_trees(depth=2).map(lambda tree: f"({render(tree)})")
    if names:
        term = st.sampled_from(names).map(lambda name: f'slice = "{name}"')
        leaf = st.one_of(term, leaf, term)
    negated = st.tuples(st.booleans(), leaf).map(lambda t: ("NOT " if t[0] else "") + t[1])
    return st.tuples(
        st.sampled_from([" AND ", " OR ", " "]), st.lists(negated, min_size=1, max_size=3)
    ).map(lambda t: t[0].join(t[1]))


@st.composite
def sliced_queries(draw: st.DrawFn) -> tuple[dict[str, str], str]:
    """Saved slices ``s0..s3`` (each may use the ones before it) and a query using them."""
    slices: dict[str, str] = {}
    for number, name in enumerate(SLICE_NAMES):
        slices[name] = draw(_sliced_text(tuple(SLICE_NAMES[:number])))
    return slices, draw(_sliced_text(tuple(SLICE_NAMES)))


def substitute(text: str, slices: dict[str, str]) -> str:
    """The reference meaning of a slice: its query text, in parentheses, in place of the term."""
    return _SLICE_TERM.sub(lambda m: "(" + substitute(slices[m.group(1)], slices) + ")", text)
