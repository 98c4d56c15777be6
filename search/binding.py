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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import assert_never

from search.ast import And, Comparison, Label, Node, Not, Or
from search.fields import ATTRIBUTES
from store import schema as f


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


Plan = Exists | ItemTest | AllOf | AnyOf | NoneOf


def is_attribute_only(node: Node) -> bool:
    """Made only of prediction-attribute comparisons (and AND/OR/NOT)."""
    match node:
        case Comparison(field=name):
            return name in ATTRIBUTES
        case Label():
            return False
        case Not(operand):
            return is_attribute_only(operand)
        case And(operands) | Or(operands):
            return all(is_attribute_only(child) for child in operands)
        case _:
            assert_never(node)


def reaches_label(node: Node) -> bool:
    """A label term is reachable from ``node`` through AND/OR (not NOT)."""
    match node:
        case Label():
            return True
        case Comparison() | Not():
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
            case Label():
                pass
            case Not(operand):
                stack.append(operand)
            case And(operands) | Or(operands):
                stack.extend(operands)
            case _:
                assert_never(node)
    return False


def bind(root: Node) -> Plan:
    """The plan for a whole query."""
    return _Binder(root).plan(root, ())


def _unbound(conditions: tuple[Node, ...]) -> Exists:
    return Exists(f.PREDICTION_PATHS, None, conditions, mentions_status(conditions))


class _Binder:
    def __init__(self, root: Node) -> None:
        # Which subtrees are attribute-only, worked out once bottom-up (ids of the nodes).
        self.attribute_only: set[int] = set()
        self._mark(root)

    def _mark(self, node: Node) -> bool:
        match node:
            case Comparison(field=name):
                only = name in ATTRIBUTES
            case Label():
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
            case Label(kind=kind):
                return Exists((kind.path,), node, bound, mentions_status(bound))
            case Comparison():
                return ItemTest(node)
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
