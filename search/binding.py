"""Binding analysis: which prediction each condition talks about.

The pass turns the AST into a small plan whose leaves say either "the item field satisfies
this" or "some visible prediction on these paths satisfies this label and these attribute
conditions". The rules (see docs/query-language.md):

- Inside an ``AND``, the operands made only of prediction attributes (``score``,
  ``training_set``, ``status``, ``model``, combined with AND/OR/NOT) form a group that binds to
  every label term reachable from the other operands through AND/OR, never through NOT: each
  such label must be satisfied by one prediction together with the whole group.
- A group (or any maximal attribute-only subtree) with no label to bind to means "some
  prediction, image or object, satisfies it".
- NOT starts afresh: nothing binds across it.
- Rejected predictions are invisible unless the conditions of the clause mention ``status``.
- Item fields never bind.
- Box-geometry attributes (``box_area``...) describe objects: a group that mentions one binds
  to object labels only (an image label is an error) and, unbound, talks about objects.
- ``count(condition) op n`` tests ``condition`` on each visible prediction of one kind on its
  own and compares how many pass; every operator is written with "at least n" (``AtLeast``).
- Ground-truth labels (``truth_object_prefix:L``) match an annotation of the imported truth
  (any source; nothing there is hidden). Prediction attributes never bind to them: they are
  skipped when looking for labels to bind to, and a count of truth takes no attributes.
- A similarity clause (``similar:``) is not a condition: callers bind the rest of the query
  (``search.similarity.split``); met here, it binds nothing and selects everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, assert_never

from search.ast import And, Comparison, Count, Label, Node, Not, Op, Or, Similar
from search.errors import CountError, ObjectAttributeError, SimilarityError
from search.fields import ATTRIBUTES, OBJECT_ONLY_ATTRIBUTES, geometry_example
from store import schema as f
from store.schema import PredictionKind


@dataclass(frozen=True, slots=True)
class Exists:
    """Some prediction on one of ``paths`` satisfies ``label`` (if any) and all ``conditions``.

    ``conditions`` are attribute-only AST nodes; unless ``include_rejected``, the prediction
    must not be rejected.
    """

    paths: tuple[str, ...]
    label: Label | None
    conditions: tuple[Node, ...]
    include_rejected: bool


@dataclass(frozen=True, slots=True)
class AtLeast:
    """At least ``number`` (>= 1) predictions on ``paths`` satisfy ``condition`` on their own.

    ``condition`` holds labels and attributes; unless ``include_rejected``, rejected
    predictions are not counted.
    """

    paths: tuple[str, ...]
    condition: Node
    number: int
    include_rejected: bool


@dataclass(frozen=True, slots=True)
class ItemTest:
    """An item-field comparison."""

    comparison: Comparison


@dataclass(frozen=True, slots=True)
class AllOf:
    parts: tuple[Plan, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    parts: tuple[Plan, ...]


@dataclass(frozen=True, slots=True)
class NoneOf:
    """Negation of one part."""

    part: Plan


Plan = Exists | AtLeast | ItemTest | AllOf | AnyOf | NoneOf
# What ``count(x) >= 0`` and ``count(x) < 0`` come to: every item, no item.
EVERYTHING: Final = AllOf(())
NOTHING: Final = AnyOf(())


def is_attribute_only(node: Node) -> bool:
    """Made only of prediction-attribute comparisons (and AND/OR/NOT)."""
    match node:
        case Comparison(field=name):
            return name in ATTRIBUTES
        case Label() | Count() | Similar():
            return False
        case Not(operand):
            return is_attribute_only(operand)
        case And(operands) | Or(operands):
            return all(is_attribute_only(child) for child in operands)
        case _:
            assert_never(node)


def reaches_label(node: Node) -> bool:
    """A prediction label term is reachable from ``node`` through AND/OR (not NOT)."""
    match node:
        case Label(truth=truth):
            return not truth
        case Comparison() | Not() | Count() | Similar():
            return False
        case And(operands) | Or(operands):
            return any(reaches_label(child) for child in operands)
        case _:
            assert_never(node)


def mentions_status(nodes: tuple[Node, ...]) -> bool:
    """Any of ``nodes`` compares the prediction ``status`` (under any AND/OR/NOT)."""
    stack = list(nodes)
    while stack:
        node = stack.pop()
        match node:
            case Comparison(field=name):
                if name == f.PRED_STATUS:
                    return True
            case Label() | Count() | Similar():
                pass
            case Not(operand):
                stack.append(operand)
            case And(operands) | Or(operands):
                stack.extend(operands)
            case _:
                assert_never(node)
    return False


def object_attribute(nodes: tuple[Node, ...]) -> Comparison | None:
    """The first box-geometry comparison in ``nodes`` (under any AND/OR/NOT), if any."""
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        match node:
            case Comparison(field=name):
                if name in OBJECT_ONLY_ATTRIBUTES:
                    return node
            case Label() | Count() | Similar():
                pass
            case Not(operand):
                stack.append(operand)
            case And(operands) | Or(operands):
                stack.extend(reversed(operands))
            case _:
                assert_never(node)
    return None


def attribute_paths(conditions: tuple[Node, ...]) -> tuple[str, ...]:
    """Where an unbound attribute group looks: objects if it mentions box geometry."""
    if object_attribute(conditions) is not None:
        return (f.OBJECT_PREDICTIONS,)
    return f.PREDICTION_PATHS


def check_count(condition: Node) -> tuple[str, ...]:
    """The nested paths a ``count(condition)`` counts on, or a :class:`CountError`.

    The inside may hold labels of one kind and prediction attributes, nothing else; or labels
    of the ground truth of one kind, and nothing else.
    """
    kinds: dict[PredictionKind, Label] = {}
    truth: list[Label] = []
    attributes: list[Comparison] = []
    stack = [condition]
    while stack:
        node = stack.pop()
        match node:
            case Label(kind=kind):
                if node.truth:
                    truth.append(node)
                other = next((label for k, label in kinds.items() if k is not kind), None)
                if other is None and kinds and node.truth != next(iter(kinds.values())).truth:
                    other = next(iter(kinds.values()))
                if other is not None:
                    second = max(other, node, key=lambda n: n.span.start)
                    if other.truth != node.truth:
                        raise CountError(
                            "a count counts predictions or ground truth, but this mixes them",
                            second.span.start,
                            second.span.end,
                            hint="count each on its own, e.g. `count(truth_object_prefix:car)"
                            " >= 2 AND count(object_prefix:car) < 2`",
                        )
                    raise CountError(
                        "a count counts predictions of one kind, but this mixes image and"
                        " object labels",
                        second.span.start,
                        second.span.end,
                        hint="count each kind on its own, e.g."
                        " `count(image_prefix:weather) >= 1 AND count(object_prefix:car) >= 2`",
                    )
                kinds.setdefault(kind, node)
            case Comparison(field=name):
                if name not in ATTRIBUTES:
                    raise CountError(
                        f"`{name}` describes the item, not a prediction; it cannot be counted",
                        node.span.start,
                        node.span.end,
                        hint="compare it outside the count, e.g."
                        f" `count(object_prefix:car) >= 2 AND {name} = ...`",
                    )
                attributes.append(node)
            case Count():
                raise CountError(
                    "a count cannot contain another count",
                    node.span.start,
                    node.span.end,
                    hint="combine counts with AND/OR outside each other",
                )
            case Similar():
                raise SimilarityError(
                    "a similarity clause cannot be counted",
                    node.span.start,
                    node.span.end,
                    hint="AND it, outside the count, with the rest of the query",
                )
            case Not(operand):
                stack.append(operand)
            case And(operands) | Or(operands):
                stack.extend(operands)
            case _:
                assert_never(node)
    if truth:
        if attributes:
            first = min(attributes, key=lambda n: n.span.start)
            raise CountError(
                f"ground truth has no `{first.field}`: a count of truth takes labels only",
                first.span.start,
                first.span.end,
                hint="count the truth on its own, e.g. `count(truth_object_prefix:car) >= 2`",
            )
        return (truth[0].kind.truth_path,)
    if PredictionKind.IMAGE in kinds:
        geometry = object_attribute((condition,))
        if geometry is not None:
            label = kinds[PredictionKind.IMAGE]
            raise ObjectAttributeError(
                f"`{geometry.field}` describes object boxes, but this count counts image"
                f" predictions (`{label.kind.value}_prefix:{label.value}`), which have none",
                geometry.span.start,
                geometry.span.end,
                hint="count object predictions, e.g."
                f" `count(object_prefix:car AND {geometry_example(geometry.field)}) >= 2`",
            )
        return (f.IMAGE_PREDICTIONS,)
    if PredictionKind.OBJECT in kinds:
        return (f.OBJECT_PREDICTIONS,)
    return attribute_paths((condition,))


def _image_geometry(geometry: Comparison, label: Label) -> ObjectAttributeError:
    return ObjectAttributeError(
        f"`{geometry.field}` describes object boxes, but here it applies to the image label"
        f" `{label.kind.value}_prefix:{label.value}`",
        geometry.span.start,
        geometry.span.end,
        hint="use it with an object label, e.g."
        f" `object_prefix:car AND {geometry_example(geometry.field)}`",
    )


def count_plan(node: Count) -> Plan:
    """``count(...) op n`` written with "at least": ``> n`` is ``>= n+1``, ``< n`` is
    ``NOT >= n``, ``= n`` is ``>= n AND NOT >= n+1``, ``!= n`` is ``< n OR > n``.

    "At least 0" holds for every item, so ``= 0`` is ``NOT >= 1`` (items with no prediction at
    all included), ``!= 0`` is ``>= 1``, ``>= 0`` is everything and ``< 0`` nothing.
    """
    paths = check_count(node.condition)
    # Nothing of the ground truth is hidden.
    include_rejected = paths[0] in f.TRUTH_PATHS or mentions_status((node.condition,))

    def at_least(number: int) -> Plan:
        if number <= 0:
            return EVERYTHING
        return AtLeast(paths, node.condition, number, include_rejected)

    def fewer_than(number: int) -> Plan:
        if number <= 0:
            return NOTHING
        return NoneOf(at_least(number))

    def exactly(number: int) -> Plan:
        if number == 0:
            return fewer_than(1)
        return AllOf((at_least(number), fewer_than(number + 1)))

    n = node.number
    match node.op:
        case Op.GE:
            return at_least(n)
        case Op.GT:
            return at_least(n + 1)
        case Op.LT:
            return fewer_than(n)
        case Op.LE:
            return fewer_than(n + 1)
        case Op.EQ:
            return exactly(n)
        case Op.NE:
            if n == 0:
                return at_least(1)
            return AnyOf((fewer_than(n), at_least(n + 1)))
        case _:
            assert_never(node.op)


def bind(root: Node) -> Plan:
    """The plan for a whole query; raises the binding errors (geometry on an image label)."""
    return _Binder(root).plan(root, ())


def _unbound(conditions: tuple[Node, ...]) -> Exists:
    return Exists(attribute_paths(conditions), None, conditions, mentions_status(conditions))


class _Binder:
    def __init__(self, root: Node) -> None:
        # Which subtrees are attribute-only, worked out once bottom-up (ids of the nodes).
        self.attribute_only: set[int] = set()
        self._mark(root)

    def _mark(self, node: Node) -> bool:
        match node:
            case Comparison(field=name):
                only = name in ATTRIBUTES
            case Label() | Count() | Similar():
                only = False
            case Not(operand):
                only = self._mark(operand)
            case And(operands) | Or(operands):
                only = all([self._mark(child) for child in operands])
            case _:
                assert_never(node)
        if only:
            self.attribute_only.add(id(node))
        return only

    def plan(self, node: Node, bound: tuple[Node, ...]) -> Plan:
        if id(node) in self.attribute_only:
            return _unbound((node,))
        match node:
            case Label(kind=kind, truth=True):
                # Attributes describe predictions: none binds here; nothing of the truth hides.
                return Exists((kind.truth_path,), node, (), include_rejected=True)
            case Label(kind=kind):
                if kind is PredictionKind.IMAGE and (geometry := object_attribute(bound)):
                    raise _image_geometry(geometry, node)
                return Exists((kind.path,), node, bound, mentions_status(bound))
            case Comparison():
                return ItemTest(node)
            case Count():
                return count_plan(node)
            case Similar():
                return EVERYTHING
            case Not(operand):
                return NoneOf(self.plan(operand, ()))
            case Or(operands):
                return AnyOf(tuple(self.plan(child, bound) for child in operands))
            case And(operands):
                group = tuple(child for child in operands if id(child) in self.attribute_only)
                others = [child for child in operands if id(child) not in self.attribute_only]
                if group and any(reaches_label(child) for child in others):
                    return AllOf(tuple(self.plan(child, bound + group) for child in others))
                parts = [self.plan(child, bound) for child in others]
                if group:
                    parts.append(_unbound(group))
                return AllOf(tuple(parts))
            case _:
                assert_never(node)
