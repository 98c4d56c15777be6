"""Which predictions of an item an export holds, written once in :data:`CONTENT`.

- ``predictions``: what the models predicted, every prediction queries can see (pending,
  accepted, modified; rejected ones are invisible here as in queries). A modified prediction
  is exported with its corrected label and box.
- ``reviewed``: the training signal, accepted and modified predictions (corrected label and
  box); pending and rejected ones are left out, and so are items without any.

``training_set`` narrows either to one training set's predictions; items are then exported if
that training set tagged them (``tagged_by``) or holds a prediction there.

Ground truth (the evaluation issue) adds a row: its own nested lists (``paths``) and rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from export.spec import Content
from store import schema as f
from store.schema import PredictionKind, PredictionStatus

Query = dict[str, Any]


@dataclass(frozen=True, slots=True)
class ContentRule:
    meaning: str
    # The nested lists read, by kind of annotation they hold.
    paths: Mapping[PredictionKind, str]
    statuses: frozenset[str]
    # Only items holding at least one such prediction are exported.
    items_need_one: bool


_PREDICTION_PATHS: Final = {kind: kind.path for kind in PredictionKind}
CONTENT: Final[Mapping[Content, ContentRule]] = {
    Content.PREDICTIONS: ContentRule(
        meaning="model predictions: every prediction but rejected ones, modified ones with"
        " their corrected label and box; scores as the models gave them",
        paths=_PREDICTION_PATHS,
        statuses=frozenset(
            {PredictionStatus.PENDING, PredictionStatus.ACCEPTED, PredictionStatus.MODIFIED}
        ),
        items_need_one=False,
    ),
    Content.REVIEWED: ContentRule(
        meaning="reviewed labels: accepted and modified predictions (corrected label and box),"
        " the training signal; pending and rejected predictions are left out, and items"
        " without a reviewed prediction",
        paths=_PREDICTION_PATHS,
        statuses=frozenset({PredictionStatus.ACCEPTED, PredictionStatus.MODIFIED}),
        items_need_one=True,
    ),
}


def selected(
    item: Mapping[str, Any], content: Content, training_set: str | None
) -> dict[PredictionKind, list[Mapping[str, Any]]]:
    """The predictions of ``item`` the export holds, per kind, in stored order."""
    rule = CONTENT[content]
    chosen: dict[PredictionKind, list[Mapping[str, Any]]] = {}
    for kind, path in rule.paths.items():
        chosen[kind] = [
            p
            for p in item.get(path) or ()
            if p.get(f.PRED_STATUS, PredictionStatus.PENDING) in rule.statuses
            and (training_set is None or p.get(f.PRED_TRAINING_SET) == training_set)
        ]
    return chosen


def items_filter(content: Content, training_set: str | None) -> Query | None:
    """The items an export of ``content`` may hold at all (``None``: any item)."""
    rule = CONTENT[content]
    conditions: list[Query] = []
    if training_set is not None:
        conditions.append(
            _any_of(
                [
                    {"term": {f.TAGGED_BY: training_set}},
                    *_nested(rule, [_term(f.PRED_TRAINING_SET, training_set)]),
                ]
            )
        )
    if rule.items_need_one:
        statuses = {"terms": {f.PRED_STATUS: sorted(rule.statuses)}}
        wanted = [statuses] + (
            [] if training_set is None else [_term(f.PRED_TRAINING_SET, training_set)]
        )
        conditions.append(_any_of(_nested(rule, wanted)))
    if not conditions:
        return None
    return {"bool": {"filter": conditions}}


def _term(name: str, value: str) -> Query:
    return {"term": {name: value}}


def _nested(rule: ContentRule, conditions: Sequence[Query]) -> list[Query]:
    """One ``nested`` clause per path, the conditions (named relative to a prediction) inside."""
    clauses = []
    for path in rule.paths.values():
        inner = [
            {kind: {f"{path}.{name}": value for name, value in body.items()}}
            for condition in conditions
            for kind, body in condition.items()
        ]
        clauses.append({"nested": {"path": path, "query": {"bool": {"filter": inner}}}})
    return clauses


def _any_of(queries: list[Query]) -> Query:
    return {"bool": {"should": queries, "minimum_should_match": 1}}
