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
    TypeMismatchError,
    UnbalancedParenthesisError,
    UnknownFieldError,
    UnknownPrefixError,
    UnsupportedOperatorError,
    UnterminatedStringError,
    WildcardError,
)
from search.evaluate import evaluate
from search.fields import BAND_RANGES
from search.parser import parse
from search.render import render
from search.translate import matched_prediction_filters, translate, visible_predictions_filter

__all__ = [
    "BAND_RANGES",
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
    "TypeMismatchError",
    "UnbalancedParenthesisError",
    "UnknownFieldError",
    "UnknownPrefixError",
    "UnsupportedOperatorError",
    "UnterminatedStringError",
    "WildcardError",
    "evaluate",
    "matched_prediction_filters",
    "parse",
    "render",
    "translate",
    "visible_predictions_filter",
]
