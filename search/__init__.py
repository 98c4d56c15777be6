"""The autotag query language: parse text, translate to Elasticsearch, evaluate in Python.

>>> tree = parse("object_prefix:car AND score < 0.5")
>>> render(tree)
'object_prefix:car AND score < 0.5'
"""

from search.ast import Band, Node
from search.errors import (
    CountError,
    EmptyQueryError,
    InvalidValueError,
    LeadingWildcardError,
    MissingValueError,
    ObjectAttributeError,
    QueryError,
    QuerySyntaxError,
    QueryTooDeepError,
    QueryTooLongError,
    SimilarityError,
    SliceCycleError,
    SliceError,
    SliceTooDeepError,
    TypeMismatchError,
    UnbalancedParenthesisError,
    UnknownFieldError,
    UnknownPrefixError,
    UnknownSliceError,
    UnsupportedOperatorError,
    UnterminatedStringError,
    WildcardError,
)
from search.evaluate import evaluate
from search.fields import BAND_RANGES
from search.parser import parse
from search.render import render
from search.slices import (
    SLICE_NAME_RE,
    dependants,
    rename_references,
    slice_references,
    used_slices,
)
from search.translate import matched_prediction_filters, translate, visible_predictions_filter

__all__ = [
    "BAND_RANGES",
    "SLICE_NAME_RE",
    "Band",
    "CountError",
    "EmptyQueryError",
    "InvalidValueError",
    "LeadingWildcardError",
    "MissingValueError",
    "Node",
    "ObjectAttributeError",
    "QueryError",
    "QuerySyntaxError",
    "QueryTooDeepError",
    "QueryTooLongError",
    "SimilarityError",
    "SliceCycleError",
    "SliceError",
    "SliceTooDeepError",
    "TypeMismatchError",
    "UnbalancedParenthesisError",
    "UnknownFieldError",
    "UnknownPrefixError",
    "UnknownSliceError",
    "UnsupportedOperatorError",
    "UnterminatedStringError",
    "WildcardError",
    "dependants",
    "evaluate",
    "matched_prediction_filters",
    "parse",
    "rename_references",
    "render",
    "slice_references",
    "translate",
    "used_slices",
    "visible_predictions_filter",
]
