"""The reference evaluator: does one stored item document satisfy a query?

Written from the language's semantics, directly over the AST, without the binding plan or the
translator, so that comparing it with Elasticsearch (the differential test) checks both.
Values are compared the way the index stores them: prediction scores and metadata floats as
32-bit floats, dates as UTC milliseconds, keyword lists as "any element".

A query with a similarity clause ranks a collection rather than testing one document:
:func:`nearest` answers it by brute-force cosine over every document (``search.similarity``
states the semantics), which is what Elasticsearch's approximate kNN is checked against.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, assert_never

from search.ast import (
    And,
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
    Similar,
    SimilarityKind,
    Text,
)
from search.fields import ATTRIBUTES, BAND_RANGES, FLOAT_ATTRIBUTES, OBJECT_ONLY_ATTRIBUTES
from search.similarity import has_similarity, neighbours, split
from store import schema as f
from store.schema import PredictionKind

Document = Mapping[str, Any]
Prediction = Mapping[str, Any]


def evaluate(node: Node, document: Document) -> bool:
    """Whether ``document`` (an item ``_source`` as stored) matches ``node``."""
    if has_similarity(node):
        raise ValueError("a similarity query ranks a collection: use search.evaluate.nearest")
    return _matches(node, document, bound=())


@dataclass(frozen=True)
class Ranked:
    """The answer to a similarity query: ``(document, cosine similarity)``, nearest first, and
    how many documents the filter selected that have no embedding (never ranked)."""

    hits: list[tuple[Document, float]]
    skipped_without_embedding: int


def nearest(
    node: Node, documents: Iterable[Document], vector: Sequence[float] | None = None
) -> Ranked:
    """The ``k`` documents the similarity query ``node`` answers, by exact cosine similarity.

    ``vector`` is the query's: the text's embedding for ``similar:``; for ``similar_to:ID`` it
    may be left out and is then ``ID``'s stored embedding.
    """
    clause, rest = split(node)
    if clause is None:
        raise ValueError("not a similarity query")
    corpus = list(documents)
    if vector is None:
        if clause.kind is not SimilarityKind.ITEM:
            raise ValueError("similar: needs the text's vector")
        vector = _reference_vector(clause, corpus)
    query = _unit(vector)
    scored: list[tuple[float, str, Document]] = []
    skipped = 0
    for document in corpus:
        item_id = str(document.get(f.ITEM_ID))
        if clause.kind is SimilarityKind.ITEM and item_id == clause.value:
            continue
        if rest is not None and not _matches(rest, document, bound=()):
            continue
        stored = document.get(f.EMBEDDING)
        if stored is None:
            skipped += 1
            continue
        similarity = sum(a * b for a, b in zip(query, _unit(stored), strict=True))
        scored.append((-similarity, item_id, document))
    scored.sort(key=lambda entry: (entry[0], entry[1]))
    hits = [(document, -negated) for negated, _, document in scored[: neighbours(clause)]]
    return Ranked(hits, skipped)


def _reference_vector(clause: Similar, corpus: list[Document]) -> Sequence[float]:
    for document in corpus:
        if str(document.get(f.ITEM_ID)) == clause.value:
            stored = document.get(f.EMBEDDING)
            if stored is None:
                raise ValueError(f"item {clause.value!r} has no embedding")
            return list(stored)
    raise ValueError(f"no item {clause.value!r}")


def _unit(vector: Iterable[float]) -> list[float]:
    values = [float(x) for x in vector]
    norm = math.sqrt(sum(x * x for x in values))
    if norm == 0 or not math.isfinite(norm):
        raise ValueError("a zero or non-finite vector has no direction")
    return [x / norm for x in values]


def _attribute_only(node: Node) -> bool:
    if isinstance(node, Comparison):
        return node.field in ATTRIBUTES
    if isinstance(node, Label | Count | Similar):
        return False
    if isinstance(node, Not):
        return _attribute_only(node.operand)
    return all(_attribute_only(child) for child in node.operands)


def _has_label_within_reach(node: Node) -> bool:
    """A prediction label reachable through AND/OR: truth labels take no attributes."""
    if isinstance(node, Label):
        return not node.truth
    if isinstance(node, And | Or):
        return any(_has_label_within_reach(child) for child in node.operands)
    return False


def _talks_about_status(nodes: Iterable[Node]) -> bool:
    for node in nodes:
        if isinstance(node, Comparison) and node.field == f.PRED_STATUS:
            return True
        if isinstance(node, Not) and _talks_about_status([node.operand]):
            return True
        if isinstance(node, And | Or) and _talks_about_status(node.operands):
            return True
    return False


def _mentions_geometry(nodes: Iterable[Node]) -> bool:
    for node in nodes:
        if isinstance(node, Comparison) and node.field in OBJECT_ONLY_ATTRIBUTES:
            return True
        if isinstance(node, Not) and _mentions_geometry([node.operand]):
            return True
        if isinstance(node, And | Or) and _mentions_geometry(node.operands):
            return True
    return False


def _group_paths(conditions: tuple[Node, ...]) -> tuple[str, ...]:
    """Box geometry exists on object predictions only; other groups look at both kinds."""
    return (f.OBJECT_PREDICTIONS,) if _mentions_geometry(conditions) else f.PREDICTION_PATHS


def _label_kinds(node: Node) -> set[PredictionKind]:
    if isinstance(node, Label):
        return {node.kind}
    if isinstance(node, Not):
        return _label_kinds(node.operand)
    if isinstance(node, And | Or):
        return {kind for child in node.operands for kind in _label_kinds(child)}
    return set()


def _truth_labels(node: Node) -> list[Label]:
    if isinstance(node, Label):
        return [node] if node.truth else []
    if isinstance(node, Not):
        return _truth_labels(node.operand)
    if isinstance(node, And | Or):
        return [label for child in node.operands for label in _truth_labels(child)]
    return []


def _count(node: Count, document: Document) -> bool:
    """Each visible prediction of the counted kind is tested on its own, then counted; a count
    of ground truth counts annotations (all visible)."""
    truth = _truth_labels(node.condition)
    if truth:
        found = sum(
            1
            for annotation in document.get(truth[0].kind.truth_path) or ()
            if _prediction_matches(node.condition, annotation)
        )
        return _ordered(node.op, found, node.number)
    kinds = _label_kinds(node.condition)
    paths = tuple(kind.path for kind in kinds) if kinds else _group_paths((node.condition,))
    see_rejected = _talks_about_status([node.condition])
    found = sum(
        1
        for prediction in _predictions(document, paths)
        if (see_rejected or prediction.get(f.PRED_STATUS) != f.PredictionStatus.REJECTED)
        and _prediction_matches(node.condition, prediction)
    )
    return _ordered(node.op, found, node.number)


def _predictions(document: Document, paths: Iterable[str]) -> Iterable[Prediction]:
    for path in paths:
        yield from document.get(path) or ()


def _some_prediction(
    document: Document, paths: Iterable[str], conditions: tuple[Node, ...], label: Label | None
) -> bool:
    see_rejected = _talks_about_status(conditions)
    for prediction in _predictions(document, paths):
        if not see_rejected and prediction.get(f.PRED_STATUS) == f.PredictionStatus.REJECTED:
            continue
        if label is not None and not _label_matches(label, prediction):
            continue
        if all(_prediction_matches(condition, prediction) for condition in conditions):
            return True
    return False


def _matches(node: Node, document: Document, bound: tuple[Node, ...]) -> bool:
    if _attribute_only(node):
        # Not bound to a label: some prediction of either kind satisfies it.
        return _some_prediction(document, _group_paths((node,)), (node,), None)
    match node:
        case Label(truth=True):
            return any(
                _label_matches(node, annotation)
                for annotation in document.get(node.kind.truth_path) or ()
            )
        case Label():
            return _some_prediction(document, (node.kind.path,), bound, node)
        case Comparison():
            return _compare(node, _item_values(document, node.field))
        case Count():
            return _count(node, document)
        case Similar():
            return True  # not a condition: nearest() ranks what the rest selects
        case Not(operand):
            return not _matches(operand, document, ())
        case Or(operands):
            return any(_matches(child, document, bound) for child in operands)
        case And(operands):
            attributes = tuple(child for child in operands if _attribute_only(child))
            rest = [child for child in operands if not _attribute_only(child)]
            binds = bool(attributes) and any(_has_label_within_reach(child) for child in rest)
            inner = bound + attributes if binds else bound
            if not all(_matches(child, document, inner) for child in rest):
                return False
            if attributes and not binds:
                return _some_prediction(document, _group_paths(attributes), attributes, None)
            return True
        case _:
            assert_never(node)


def _label_matches(label: Label, prediction: Prediction) -> bool:
    current = prediction.get(f.PRED_LABEL)
    if not isinstance(current, str):
        return False
    if label.prefix:
        return current.startswith(label.value)
    return f.label_matches_prefix(current, label.value)


def _prediction_matches(node: Node, prediction: Prediction) -> bool:
    match node:
        case Label():
            return _label_matches(node, prediction)
        case Comparison():
            return _compare(node, _as_list(prediction.get(node.field)))
        case Not(operand):
            return not _prediction_matches(operand, prediction)
        case And(operands):
            return all(_prediction_matches(child, prediction) for child in operands)
        case Or(operands):
            return any(_prediction_matches(child, prediction) for child in operands)
        case Count() | Similar():
            raise AssertionError("counts and similarity are never inside a count")
        case _:
            assert_never(node)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _item_values(document: Document, field: str) -> list[Any]:
    """Values of a (possibly dotted) item field; a dotted key may also be stored literally."""
    if field in document:
        return _as_list(document[field])
    head, _, rest = field.partition(".")
    if rest and isinstance(document.get(head), Mapping):
        return _item_values(document[head], rest)
    if rest and isinstance(document.get(head), list):
        subs = [sub for sub in document[head] if isinstance(sub, Mapping)]
        return [value for sub in subs for value in _item_values(sub, rest)]
    return []


def _compare(comparison: Comparison, values: list[Any]) -> bool:
    """``!=`` holds exactly when ``=`` does not (a missing field satisfies it)."""
    if comparison.op is Op.NE:
        positive = Comparison(comparison.field, Op.EQ, comparison.value)
        return not _compare(positive, values)
    test = _value_test(comparison)
    return any(test(value) for value in values)


def _float32(value: float) -> float:
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _numeric(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


def _value_test(comparison: Comparison) -> Callable[[Any], bool]:
    op, query = comparison.op, comparison.value
    match query:
        case Number(number):
            always_float = comparison.field in FLOAT_ATTRIBUTES

            # Scores, box geometry and dynamically mapped float metadata are 32-bit floats.
            def test(stored: Any) -> bool:
                value = _numeric(stored)
                if value is None:
                    return False
                if always_float or isinstance(value, float):
                    return _ordered(op, _float32(value), _float32(float(number)))
                return _ordered(op, value, number)

            return test
        case Text(text):

            def test_text(stored: Any) -> bool:
                if isinstance(stored, bool):
                    return text == ("true" if stored else "false")
                return isinstance(stored, str) and stored == text

            return test_text
        case ScoreBand(band):
            low, high, inclusive = BAND_RANGES[band]

            def test_band(stored: Any) -> bool:
                value = _numeric(stored)
                if value is None:
                    return False
                score = _float32(float(value))
                below_top = score <= _float32(high) if inclusive else score < _float32(high)
                return _float32(low) <= score and below_top

            return test_band
        case Instant():
            return lambda stored: _date_test(op, query, stored)
        case _:
            assert_never(query)


def _ordered(op: Op, left: float, right: float) -> bool:
    match op:
        case Op.EQ:
            return left == right
        case Op.LT:
            return left < right
        case Op.LE:
            return left <= right
        case Op.GT:
            return left > right
        case Op.GE:
            return left >= right
        case Op.NE:
            return left != right
        case _:
            assert_never(op)


def _stored_millis(stored: Any) -> int | None:
    if isinstance(stored, int) and not isinstance(stored, bool):
        return stored
    if not isinstance(stored, str):
        return None
    try:
        moment = datetime.fromisoformat(stored)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _date_test(op: Op, query: Instant, stored: Any) -> bool:
    millis = _stored_millis(stored)
    if millis is None:
        return False
    start, end = query.start_ms, query.end_ms
    match op:
        case Op.EQ | Op.NE:
            return start <= millis < end
        case Op.LT:
            return millis < start
        case Op.LE:
            return millis < end
        case Op.GT:
            return millis >= end
        case Op.GE:
            return millis >= start
        case _:
            assert_never(op)
