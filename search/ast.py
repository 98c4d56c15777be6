"""The typed query tree: frozen dataclasses, source spans kept out of equality.

Two trees that say the same thing compare equal whatever their spacing, keyword case or
redundant parentheses, which is what ``parse(render(tree)) == tree`` relies on.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as attribute
from enum import StrEnum

from store.schema import PredictionKind


@dataclass(frozen=True, slots=True)
class Span:
    """Character offsets into the query text, ``end`` exclusive."""

    start: int
    end: int


NO_SPAN = Span(0, 0)


class Op(StrEnum):
    EQ = "="
    NE = "!="
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="

    @property
    def is_ordering(self) -> bool:
        return self not in (Op.EQ, Op.NE)


class Band(StrEnum):
    """Named score ranges (see ``search.fields.BAND_RANGES``)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    NEGATIVE = "negative"


@dataclass(frozen=True, slots=True)
class Number:
    value: int | float


@dataclass(frozen=True, slots=True)
class Text:
    value: str


@dataclass(frozen=True, slots=True)
class ScoreBand:
    band: Band


@dataclass(frozen=True, slots=True)
class Instant:
    """A date (a whole UTC day) or a point in time (one millisecond), as ``[start, end)``."""

    start_ms: int
    whole_day: bool

    @property
    def end_ms(self) -> int:
        return self.start_ms + (86_400_000 if self.whole_day else 1)


Value = Number | Text | ScoreBand | Instant


@dataclass(frozen=True, slots=True)
class Label:
    """``image_prefix:L`` / ``object_prefix:L``; ``prefix`` for a trailing ``*``.

    ``truth``: ``truth_image_prefix:L`` / ``truth_object_prefix:L``, a label of the imported
    ground truth (any source) rather than of a prediction.
    """

    kind: PredictionKind
    value: str
    prefix: bool = False
    span: Span = attribute(default=NO_SPAN, compare=False, repr=False)
    truth: bool = False


@dataclass(frozen=True, slots=True)
class Comparison:
    """``field op value``; ``field`` is canonical (``score``, ``metadata.camera``...)."""

    field: str
    op: Op
    value: Value
    span: Span = attribute(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Not:
    operand: Node
    span: Span = attribute(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class And:
    """Two or more operands; a parenthesised ``AND`` inside an ``AND`` stays a child."""

    operands: tuple[Node, ...]
    span: Span = attribute(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Node, ...]
    span: Span = attribute(default=NO_SPAN, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Count:
    """``count(condition) op number``: how many visible predictions satisfy ``condition``.

    ``condition`` is made of labels of one kind and prediction attributes; it is tested on each
    prediction on its own (see ``search.binding.check_count``).
    """

    condition: Node
    op: Op
    number: int
    span: Span = attribute(default=NO_SPAN, compare=False, repr=False)


class SimilarityKind(StrEnum):
    """What a similarity clause compares items with: a text, or another item."""

    TEXT = "similar"
    ITEM = "similar_to"


@dataclass(frozen=True, slots=True)
class Similar:
    """``similar:"text"`` or ``similar_to:ITEM_ID``, with ``~k`` neighbours (``None``: default).

    It ranks the items the rest of the query selects by how close their embedding is and
    keeps the ``k`` nearest (see ``search.similarity``); it may only be ANDed with the rest.
    """

    kind: SimilarityKind
    value: str
    k: int | None = None
    span: Span = attribute(default=NO_SPAN, compare=False, repr=False)
    # Where the value (the text or the item id) is, for errors about it.
    value_span: Span = attribute(default=NO_SPAN, compare=False, repr=False)


Node = Label | Comparison | Not | And | Or | Count | Similar
