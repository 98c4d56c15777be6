"""AST -> Elasticsearch query DSL (plain dicts, filter context).

The binding plan (``search.binding``) decides where ``nested`` clauses go: one per bound label
term, two (image and object) for an unbound attribute group. "At least n predictions" (counts)
of one label, optionally with a lower score bound and a training set, is a ``nested`` term
on the predictions' derived ``count_ranks`` ("the n-th best car scores >= 0.8"); an OR of such
labels that cannot overlap is an OR over the ways n splits between them. Any other count is a
``nested`` clause with ``score_mode: sum`` over a ``constant_score`` (each matching prediction
scores 1) inside a ``function_score`` with ``min_score: n``; it works in filter context and
needs no scripts, but Elasticsearch cannot cache it. Everything else is ``bool``
with ``filter``/``should``/``must_not``. User text only ever lands in ``term``, ``prefix`` and
``range`` values, never in ``query_string``, scripts or regexps.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from math import comb
from typing import Any, Final, assert_never

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
    Text,
)
from search.binding import AllOf, AnyOf, AtLeast, Exists, ItemTest, NoneOf, Plan, bind
from search.errors import SimilarityError
from search.fields import BAND_RANGES, MAX_EPOCH_MS, iso_text
from search.similarity import similarity_clause
from store import schema as f

Query = dict[str, Any]
INNER_HITS_SIZE = 100
# A ranked count over k labels is an OR over the ways n splits into k parts; past this many,
# the summed count is the smaller query.
RANKED_SPLITS_MAX: Final = 32


def translate(node: Node, *, inner_hits: bool = False) -> Query:
    """The ``query`` clause for ``node``, wrapped in ``bool.filter`` so nothing is scored.

    With ``inner_hits``, every ``nested`` clause not under a negation asks for its matching
    predictions (``_nested.offset``), under a name unique within the query. A query with a
    similarity clause is translated by ``search.similarity`` (it needs the query's vector).
    """
    clause = similarity_clause(node)
    if clause is not None:
        raise SimilarityError(
            "a similarity clause needs the query's vector: it is answered by a search "
            "(the API), not by a plain filter",
            clause.span.start,
            clause.span.end,
            hint="leave it out here, or search with it through /v1/search",
        )
    query = _Builder(inner_hits).plan(bind(node), positive=True)
    if _only(query, _FILTER) or _only(query, _FILTER_MUST_NOT):
        return query
    return {"bool": {"filter": [query]}}


def matched_prediction_filters(node: Node) -> dict[str, Query]:
    """Per nested path, the query (relative to that path) for the predictions ``node`` matched.

    It is the OR of the positive (not negated) nested clauses on that path, meant for
    ``nested.query`` of a sort or of a score lookup. Empty when nothing matched predictions.
    Ground-truth paths are left out: they hold no predictions.
    """
    found: dict[str, list[Query]] = {}
    _collect(bind(node), positive=True, found=found)
    return {path: _any(queries) for path, queries in found.items()}


def _collect(plan: Plan, *, positive: bool, found: dict[str, list[Query]]) -> None:
    match plan:
        case Exists(paths=paths):
            if positive and paths[0] in f.PREDICTION_PATHS:
                for path in paths:
                    query = prediction_query(plan, path)
                    if query not in found.setdefault(path, []):
                        found[path].append(query)
        case AtLeast(paths=paths):
            if positive and paths[0] in f.PREDICTION_PATHS:
                for path in paths:
                    query = count_prediction_query(plan, path)
                    if query not in found.setdefault(path, []):
                        found[path].append(query)
        case ItemTest():
            pass
        case AllOf(parts) | AnyOf(parts):
            for part in parts:
                _collect(part, positive=positive, found=found)
        case NoneOf(part):
            _collect(part, positive=False, found=found)
        case _:
            assert_never(plan)


class _Builder:
    def __init__(self, inner_hits: bool) -> None:
        self.inner_hits = inner_hits
        self.count = 0

    def plan(self, plan: Plan, *, positive: bool) -> Query:
        match plan:
            case Exists(paths=paths):
                clauses = [self.nested(plan, path, positive=positive) for path in paths]
                return clauses[0] if len(clauses) == 1 else _any(clauses)
            case AtLeast():
                return at_least_query(plan)
            case ItemTest(comparison):
                return comparison_query(comparison, comparison.field)
            case AllOf(parts):
                return _all([self.plan(part, positive=positive) for part in parts])
            case AnyOf(parts):
                return _any([self.plan(part, positive=positive) for part in parts])
            case NoneOf(part):
                return {"bool": {"must_not": [self.plan(part, positive=False)]}}
            case _:
                assert_never(plan)

    def nested(self, plan: Exists, path: str, *, positive: bool) -> Query:
        clause: Query = {"path": path, "query": prediction_query(plan, path)}
        # Inner hits say which predictions matched; ground truth has none to show.
        if self.inner_hits and positive and path in f.PREDICTION_PATHS:
            clause["inner_hits"] = {
                "name": f"{path}_{self.count}",
                "_source": False,
                "size": INNER_HITS_SIZE,
            }
            self.count += 1
        return {"nested": clause}


def visible_predictions_filter(path: str) -> Query:
    """The predictions on nested ``path`` that queries see: rejected ones are invisible.

    Relative to ``path``, for ``nested.query`` (or a nested sort's filter). The one place the
    rule is written: queries that do not mention ``status`` get it (see ``search.binding``).
    """
    rejected = {"term": {f"{path}.{f.PRED_STATUS}": f.PredictionStatus.REJECTED.value}}
    return {"bool": {"must_not": [rejected]}}


def prediction_query(plan: Exists, path: str) -> Query:
    """The query inside ``nested`` for one path of an ``Exists`` leaf (always a ``bool``)."""
    filters: list[Query] = []
    must_not: list[Query] = []
    if plan.label is not None:
        filters.append(label_query(plan.label, path))
    for condition in plan.conditions:
        _splice(attribute_query(condition, path), filters, must_not)
    if not plan.include_rejected:
        _splice(visible_predictions_filter(path), filters, must_not)
    if not must_not and len(filters) == 1 and "bool" in filters[0]:
        return filters[0]
    body: dict[str, list[Query]] = {"filter": filters} if filters else {}
    if must_not:
        body["must_not"] = must_not
    return {"bool": body}


def count_prediction_query(plan: AtLeast, path: str) -> Query:
    """The predictions on ``path`` that an ``AtLeast`` counts (relative to ``path``)."""
    query = condition_query(plan.condition, path)
    if plan.include_rejected:
        return query
    return _all([query, visible_predictions_filter(path)])


def at_least_query(plan: AtLeast) -> Query:
    """Items with at least ``plan.number`` counted predictions (summed over its paths).

    Inner hits are never asked for here: the count's predictions are scored, not listed.
    """
    ranked = ranked_at_least_query(plan)
    if ranked is not None:
        return ranked
    if plan.number == 1:
        exists = [
            {"nested": {"path": path, "query": count_prediction_query(plan, path)}}
            for path in plan.paths
        ]
        return _any(exists)
    counted = [
        {
            "nested": {
                "path": path,
                "score_mode": "sum",
                "query": {"constant_score": {"filter": count_prediction_query(plan, path)}},
            }
        }
        for path in plan.paths
    ]
    # Scores of `should` clauses add up, so two paths count together.
    query = counted[0] if len(counted) == 1 else {"bool": {"should": counted}}
    return {"function_score": {"query": query, "min_score": plan.number}}


@dataclass(frozen=True, slots=True)
class RankedGroup:
    """One label's predictions, optionally of one training set and with a lower score bound:
    a count of them is read from ``count_ranks`` (``store.schema``)."""

    label: str
    training_set: str | None
    score: Comparison | None

    def at_least(self, number: int, path: str) -> Query:
        """Items with at least ``number`` (>= 1) visible predictions of this group on ``path``:
        its ``number``-th best clears the score bound."""
        key = f.count_rank_key(number, self.label, self.training_set)
        filters: list[Query] = [{"term": {f"{path}.{f.PRED_COUNT_RANKS}": key}}]
        if self.score is not None:
            filters.append(comparison_query(self.score, f"{path}.{f.PRED_SCORE}"))
        return {"nested": {"path": path, "query": _all(filters)}}


def ranked_groups(plan: AtLeast) -> list[RankedGroup] | None:
    """The count's condition as disjoint ranked groups, or None where it is not one.

    It is one when it counts visible predictions on one path, and is a label (no trailing
    ``*``) with at most a lower score bound (``>=``, ``>``) and a training set, or an OR of such
    labels none of which continues another (so no prediction is counted twice).
    """
    if plan.include_rejected or len(plan.paths) != 1:
        return None
    groups: list[RankedGroup] = []
    for operand in _operands(plan.condition, Or):
        group = _ranked_group(operand)
        if group is None:
            return None
        groups.append(group)
    for i, one in enumerate(groups):
        for other in groups[i + 1 :]:
            if f.label_matches_prefix(one.label, other.label) or f.label_matches_prefix(
                other.label, one.label
            ):
                return None
    return groups


def _operands(node: Node, kind: type[And] | type[Or]) -> Iterator[Node]:
    if isinstance(node, kind):
        for operand in node.operands:
            yield from _operands(operand, kind)
    else:
        yield node


# Lower bounds only: the n-th best clears "score >= x" exactly when n predictions do.
_BOUNDS: Final = frozenset({Op.GE, Op.GT})


def _ranked_group(node: Node) -> RankedGroup | None:
    label: Label | None = None
    training_set: str | None = None
    score: Comparison | None = None
    for part in _operands(node, And):
        match part:
            case Label(prefix=False, truth=False) if label is None:
                label = part
            case Comparison(field=f.PRED_SCORE, op=op, value=Number()) if (
                score is None and op in _BOUNDS
            ):
                score = part
            case Comparison(field=f.PRED_TRAINING_SET, op=Op.EQ, value=Text(text)) if (
                training_set is None
            ):
                training_set = text
            case _:
                return None
    if label is None:
        return None
    return RankedGroup(label.value, training_set, score)


def _splits(number: int, parts: int) -> Iterator[tuple[int, ...]]:
    """Every way to write ``number`` as ``parts`` whole numbers >= 0, in order."""
    if parts == 1:
        yield (number,)
        return
    for first in range(number, -1, -1):
        for rest in _splits(number - first, parts - 1):
            yield (first, *rest)


def ranked_at_least_query(plan: AtLeast) -> Query | None:
    """:func:`at_least_query` read from ``count_ranks``, or None where the count is not ranked
    (see :func:`ranked_groups`) or splits too many ways.

    At least n of disjoint groups means, for some split n = n1 + ... + nk, at least ni of each.
    """
    groups = ranked_groups(plan)
    if groups is None or comb(plan.number + len(groups) - 1, len(groups) - 1) > RANKED_SPLITS_MAX:
        return None
    path = plan.paths[0]
    return _any(
        [
            _all([group.at_least(n, path) for group, n in zip(groups, split, strict=True) if n])
            for split in _splits(plan.number, len(groups))
        ]
    )


def condition_query(node: Node, path: str) -> Query:
    """Labels and attributes tested on one prediction, relative to the nested ``path``."""
    match node:
        case Label():
            return label_query(node, path)
        case Comparison():
            return comparison_query(node, f"{path}.{node.field}")
        case Not(operand):
            return {"bool": {"must_not": [condition_query(operand, path)]}}
        case And(operands):
            return _all([condition_query(child, path) for child in operands])
        case Or(operands):
            return _any([condition_query(child, path) for child in operands])
        case Count() | Similar():
            raise AssertionError("counts and similarity are never inside a count")
        case _:
            assert_never(node)


def label_query(label: Label, path: str) -> Query:
    if label.prefix:
        return {"prefix": {f"{path}.{f.PRED_LABEL}": label.value}}
    return {"term": {f"{path}.{f.PRED_LABEL_PREFIXES}": label.value}}


def attribute_query(node: Node, path: str) -> Query:
    """An attribute-only subtree as a query relative to the nested ``path``."""
    match node:
        case Comparison():
            return comparison_query(node, f"{path}.{node.field}")
        case Not(operand):
            return {"bool": {"must_not": [attribute_query(operand, path)]}}
        case And(operands):
            return _all([attribute_query(child, path) for child in operands])
        case Or(operands):
            return _any([attribute_query(child, path) for child in operands])
        case Label() | Count() | Similar():
            raise AssertionError("labels, counts, similarity are never attribute conditions")
        case _:
            assert_never(node)


def comparison_query(comparison: Comparison, field: str) -> Query:
    """``field op value``; ``!=`` is the negation of ``=`` (so a missing field matches it)."""
    op, value = comparison.op, comparison.value
    match value:
        case Number(number):
            positive = _range_or_term(field, op, number)
        case Text(text):
            positive = {"term": {field: text}}
        case ScoreBand(band):
            low, high, inclusive = BAND_RANGES[band]
            positive = {"range": {field: {"gte": low, "lte" if inclusive else "lt": high}}}
        case Instant():
            positive = _date_range(field, op, value)
        case _:
            assert_never(value)
    if op is Op.NE:
        return {"bool": {"must_not": [positive]}}
    return positive


def _range_or_term(field: str, op: Op, number: float) -> Query:
    if op in (Op.EQ, Op.NE):
        return {"term": {field: number}}
    bound = {Op.LT: "lt", Op.LE: "lte", Op.GT: "gt", Op.GE: "gte"}[op]
    return {"range": {field: {bound: number}}}


def _date_range(field: str, op: Op, value: Instant) -> Query:
    """Dates are intervals ``[start, end)``: a whole day, or one millisecond."""
    start = {"gte": iso_text(value.start_ms)}
    # The end of 9999-12-31 cannot be written as a date; say "up to its last millisecond".
    if value.end_ms > MAX_EPOCH_MS:
        end, after = {"lte": iso_text(MAX_EPOCH_MS)}, {"gt": iso_text(MAX_EPOCH_MS)}
    else:
        end, after = {"lt": iso_text(value.end_ms)}, {"gte": iso_text(value.end_ms)}
    bounds = {
        Op.EQ: {**start, **end},
        Op.NE: {**start, **end},
        Op.LT: {"lt": iso_text(value.start_ms)},
        Op.LE: end,
        Op.GT: after,
        Op.GE: start,
    }[op]
    return {"range": {field: {**bounds, "format": "strict_date_optional_time"}}}


_FILTER = frozenset({"filter"})
_MUST_NOT = frozenset({"must_not"})
_FILTER_MUST_NOT = frozenset({"filter", "must_not"})
_SHOULD = frozenset({"should", "minimum_should_match"})


def _only(query: Query, keys: frozenset[str]) -> bool:
    """``query`` is a ``bool`` with exactly these clauses (so it can be spliced into another)."""
    body = query.get("bool")
    return body is not None and len(query) == 1 and body.keys() == keys


def _splice(query: Query, filters: list[Query], must_not: list[Query]) -> None:
    if _only(query, _FILTER):
        filters.extend(query["bool"]["filter"])
    elif _only(query, _MUST_NOT):
        must_not.extend(query["bool"]["must_not"])
    else:
        filters.append(query)


MATCH_ALL: Query = {"match_all": {}}
MATCH_NONE: Query = {"match_none": {}}


def _all(queries: list[Query]) -> Query:
    """AND: plain filters and negations are spliced into one ``bool``; ``match_all`` drops out
    and an empty AND is ``match_all``."""
    filters: list[Query] = []
    must_not: list[Query] = []
    for query in queries:
        if query != MATCH_ALL:
            _splice(query, filters, must_not)
    if not filters and not must_not:
        return MATCH_ALL
    if len(filters) == 1 and not must_not:
        return filters[0]
    body: dict[str, list[Query]] = {"filter": filters} if filters else {}
    if must_not:
        body["must_not"] = must_not
    return {"bool": body}


def _any(queries: list[Query]) -> Query:
    """OR: nested ORs are spliced into one ``should``; ``match_none`` drops out and an empty
    OR is ``match_none``."""
    should: list[Query] = []
    for query in queries:
        if _only(query, _SHOULD):
            should.extend(query["bool"]["should"])
        elif query != MATCH_NONE:
            should.append(query)
    if not should:
        return MATCH_NONE
    if len(should) == 1:
        return should[0]
    return {"bool": {"should": should, "minimum_should_match": 1}}


def matched_or_visible_filters(node: Node) -> dict[str, Query]:
    """:func:`matched_prediction_filters`, or, for a query that matches no prediction, every
    visible prediction on each path: the predictions a hit's score is read from."""
    return matched_prediction_filters(node) or {
        path: visible_predictions_filter(path) for path in f.PREDICTION_PATHS
    }
