"""The one error family of the query language.

Every bad query raises a :class:`QueryError` subclass that knows the query text, the span of
the mistake (character offsets, ``end`` exclusive) and, where we can say one, a hint. The API
turns any of them into one JSON envelope with a 4xx status; nothing else escapes ``parse``.
"""

from __future__ import annotations

from typing import ClassVar


class QueryError(Exception):
    """A query that cannot be parsed or does not make sense."""

    code: ClassVar[str] = "query_error"

    def __init__(
        self, message: str, start: int, end: int, *, hint: str | None = None, query: str = ""
    ) -> None:
        super().__init__(message)
        self.message = message
        self.start = start
        self.end = max(end, start)
        self.hint = hint
        self.query = query

    def __str__(self) -> str:
        return f"{self.message} (at {self.start}..{self.end})"

    def render(self) -> str:
        """The message, the offending line with a caret under the span, then the hint."""
        text = self.query
        line_start = text.rfind("\n", 0, self.start) + 1
        line_end = text.find("\n", self.start)
        if line_end == -1:
            line_end = len(text)
        line = text[line_start:line_end]
        column = self.start - line_start
        width = max(1, min(self.end, line_end) - self.start)
        lines = [f"error: {self.message}", f"  {line}", "  " + " " * column + "^" * width]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class QuerySyntaxError(QueryError):
    """The text does not follow the grammar."""

    code = "syntax_error"


class UnbalancedParenthesisError(QuerySyntaxError):
    code = "unbalanced_parenthesis"


class MissingValueError(QuerySyntaxError):
    """An operator, ``:`` or keyword with nothing (usable) after it."""

    code = "missing_value"


class UnterminatedStringError(QuerySyntaxError):
    code = "unterminated_string"


class WildcardError(QuerySyntaxError):
    """A ``*`` anywhere but at the end of a label."""

    code = "misplaced_wildcard"


class LeadingWildcardError(WildcardError):
    code = "leading_wildcard"


class UnknownFieldError(QueryError):
    code = "unknown_field"


class UnknownPrefixError(QueryError):
    """``something:label`` where ``something`` is not ``image_prefix``/``object_prefix``."""

    code = "unknown_prefix"


class TypeMismatchError(QueryError):
    """A value of the wrong type for its field, e.g. text where a number is needed."""

    code = "type_mismatch"


class InvalidValueError(QueryError):
    """A value of the right type that is still not allowed (unknown status, bad date...)."""

    code = "invalid_value"


class UnsupportedOperatorError(QueryError):
    """An operator the field cannot take, e.g. ``status < "x"``."""

    code = "unsupported_operator"


class CountError(QueryError):
    """A ``count(...)`` that cannot be counted: nothing inside, labels of both kinds, item
    fields or another count inside."""

    code = "invalid_count"


class ObjectAttributeError(QueryError):
    """A box-geometry attribute where it cannot apply: bound to an image label."""

    code = "object_only_attribute"


class EmptyQueryError(QueryError):
    code = "empty_query"


class QueryTooLongError(QueryError):
    code = "query_too_long"


class QueryTooDeepError(QueryError):
    """Too many nested parentheses or NOTs."""

    code = "query_too_deep"


class SliceError(QueryError):
    """A ``slice = "name"`` term that cannot be resolved: the caret is on the term in the query
    the user typed, whichever nested slice the problem lies in."""

    code = "invalid_slice"


class UnknownSliceError(SliceError):
    code = "unknown_slice"


class SliceCycleError(SliceError):
    """Slices that refer to each other in a circle (``a`` uses ``b``, ``b`` uses ``a``)."""

    code = "slice_cycle"


class SliceTooDeepError(SliceError):
    """Slices nested too deep, or a query expanding too many slices."""

    code = "slice_too_deep"


class SimilarityError(QueryError):
    """A ``similar:``/``similar_to:`` clause that cannot be answered: placed under OR, NOT or a
    count, a second one, a bad ``~k``, or (from the API) an item without an embedding."""

    code = "invalid_similarity"
