"""Query text -> AST. Lark errors are mapped to ``QueryError`` here and nowhere else.

The grammar (``grammar.lark``) is parsed with LALR in strict mode; tokens come from a small
context-aware lexer built from the grammar's terminals, and the tree is built while parsing (an
inline transformer), so no intermediate parse tree is ever allocated. Field and value checks
happen as each term is reduced and raise errors that already carry their span.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from importlib.resources import files
from typing import Any, Final

from lark import Lark, Token, Transformer
from lark.common import LexerConf
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import Lexer, LexerState

from search.ast import And, Comparison, Label, Node, Not, Op, Or, Span
from search.errors import (
    EmptyQueryError,
    MissingValueError,
    QueryError,
    QuerySyntaxError,
    QueryTooDeepError,
    QueryTooLongError,
    UnbalancedParenthesisError,
    UnterminatedStringError,
)
from search.fields import (
    ATTRIBUTES,
    ITEM_FIELDS,
    lookup_field,
    lookup_prefix,
    read_label,
    read_value,
)

DEFAULT_MAX_LENGTH: Final = 4096
# Deep enough for hand-written queries; the DSL adds up to ~6 levels and Elasticsearch
# refuses queries nested deeper than about 30.
MAX_DEPTH: Final = 20
_SURROGATE: Final = re.compile("[\ud800-\udfff]")

_DESCRIBE: Final = {
    "FIELD": "a field",
    "BARE": "a value",
    "STRING": "a quoted string",
    "STRING_STAR": "a quoted prefix",
    "OPERATOR": "an operator (=, !=, <, <=, >, >=)",
    "COLON": "`:`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "_AND": "AND",
    "_OR": "OR",
    "NOT": "NOT",
    "$END": "the end of the query",
}
_TERM_START: Final = frozenset({"FIELD", "NOT", "LPAR"})
_ESCAPE: Final = re.compile(r"\\(.)", re.DOTALL)


def _span(token: Token) -> Span:
    return Span(token.start_pos or 0, token.end_pos or 0)


def unquote(token: str) -> str:
    """The text of a ``"..."`` token: a backslash makes the next character literal."""
    return _ESCAPE.sub(r"\1", token[1:-1])


class _Builder(Transformer[Token, Node]):
    """Called by the LALR parser at each reduction; stateless, so one instance is shared."""

    def or_expr(self, operands: list[Node]) -> Or:
        return Or(tuple(operands), Span(operands[0].span.start, operands[-1].span.end))

    def and_expr(self, operands: list[Node]) -> And:
        return And(tuple(operands), Span(operands[0].span.start, operands[-1].span.end))

    def negation(self, children: list[Token | Node]) -> Not:
        keyword, operand = children
        assert isinstance(keyword, Token)
        assert not isinstance(operand, Token)
        return Not(operand, Span(keyword.start_pos or 0, operand.span.end))

    def group(self, children: list[Token | Node]) -> Node:
        left, inner, right = children
        assert isinstance(left, Token)
        assert isinstance(right, Token)
        assert not isinstance(inner, Token)
        return replace(inner, span=Span(left.start_pos or 0, right.end_pos or 0))

    def label(self, children: list[Token]) -> Label:
        name, _, value = children
        kind = lookup_prefix(name.value, _span(name))
        quoted = value.type != "BARE"
        star = value.type == "STRING_STAR"
        raw = unquote(value.value[:-1] if star else value.value) if quoted else value.value
        text, prefix = read_label(raw, quoted, star, _span(value))
        return Label(kind, text, prefix, Span(name.start_pos or 0, value.end_pos or 0))

    def comparison(self, children: list[Token]) -> Comparison:
        name, operator, value = children
        spec = lookup_field(name.value, _span(name))
        op = Op(operator.value)
        quoted = value.type == "STRING"
        raw = unquote(value.value) if quoted else value.value
        typed = read_value(spec, op, raw, quoted, _span(value))
        return Comparison(spec.name, op, typed, Span(name.start_pos or 0, value.end_pos or 0))


class _Lexer(Lexer):
    """A context-aware tokenizer built from the grammar's own terminal patterns.

    It does what Lark's contextual lexer would (a bare word after an operator or `:` is a
    value, elsewhere a field; keywords are keywords everywhere) in one regex match per token,
    which makes parsing about a third faster. Errors are raised as Lark's own exceptions, so
    they are mapped to query errors in the one place that does that.
    """

    __future_interface__ = 2

    def __init__(self, conf: LexerConf) -> None:
        terminals = conf.terminals_by_name

        def master(*names: str) -> re.Pattern[str]:
            parts = [f"(?P<{n}>{terminals[n].pattern.to_regexp()})" for n in names]
            return re.compile("|".join(parts))

        punctuation = ("OPERATOR", "COLON", "LPAR", "RPAR")
        # Where a condition may start or continue, a word is a field (so `image_prefix:car`
        # splits at the colon); after `:` or an operator it is a value, colons included.
        self.term = master("WS", "STRING_STAR", "STRING", *punctuation, "FIELD", "BARE")
        self.value = master("WS", "STRING_STAR", "STRING", "BARE", *punctuation)
        self.keywords = {"and": "_AND", "or": "_OR", "not": "NOT"}

    def lex(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:
        text = lexer_state.text.text
        assert isinstance(text, str)
        position, end = 0, len(text)
        previous = ""
        while position < end:
            pattern = self.value if previous in ("COLON", "OPERATOR") else self.term
            match = pattern.match(text, position)
            if match is None:
                raise UnexpectedCharacters(text, position, 0, 0)  # type: ignore[no-untyped-call]
            kind = match.lastgroup
            assert kind is not None
            value = match.group()
            stop = match.end()
            if kind != "WS":
                if kind in ("FIELD", "BARE"):
                    kind = self.keywords.get(value.lower(), kind)
                yield Token(kind, value, start_pos=position, end_pos=stop)
                previous = kind
            position = stop


@cache
def _parser() -> Lark:
    grammar = files("search").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer=_Lexer,
        strict=True,
        propagate_positions=True,
        transformer=_Builder(),
    )


def parse(text: str, *, max_length: int = DEFAULT_MAX_LENGTH) -> Node:
    """Parse a query into its AST; raises only :class:`QueryError` subclasses."""
    try:
        return _parse(text, max_length)
    except QueryError as error:
        error.query = text
        raise


def _parse(text: str, max_length: int) -> Node:
    if len(text) > max_length:
        raise QueryTooLongError(
            f"query is {len(text)} characters long; the limit is {max_length}",
            max_length,
            len(text),
            hint="split the query or simplify it",
        )
    if (surrogate := _SURROGATE.search(text)) is not None:
        # Only a JSON "\ud800" escape can produce one; it is not text, so nothing downstream
        # (Elasticsearch's JSON, our responses) could encode it.
        at = surrogate.start()
        raise QuerySyntaxError(
            "invalid character: a lone UTF-16 surrogate", at, at + 1, hint="send valid Unicode"
        )
    if not text.strip():
        raise EmptyQueryError(
            "empty query", 0, len(text), hint="write a condition, e.g. `object_prefix:car`"
        )
    try:
        tree = _parser().parse(text)
    except VisitError as error:  # only if Lark ever wraps a transformer error
        if isinstance(error.orig_exc, QueryError):
            raise error.orig_exc from None
        raise
    except UnexpectedInput as error:
        raise _syntax_error(error, text) from None
    assert isinstance(tree, Label | Comparison | Not | And | Or)
    _check_depth(tree)
    return tree


def _check_depth(root: Node) -> None:
    stack: list[tuple[Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise QueryTooDeepError(
                f"query nests deeper than {MAX_DEPTH} levels",
                node.span.start,
                node.span.end,
                hint="remove redundant parentheses or NOTs",
            )
        match node:
            case And(operands) | Or(operands):
                stack.extend((child, depth + 1) for child in operands)
            case Not(operand):
                stack.append((operand, depth + 1))
            case _:
                pass


def _syntax_error(error: UnexpectedInput, text: str) -> QueryError:
    """The one place where Lark's exceptions become query errors."""
    if isinstance(error, UnexpectedCharacters):
        return _bad_character(error.pos_in_stream or 0, text)
    if isinstance(error, UnexpectedToken):
        return _unexpected_token(error, text)
    position = len(text)
    return QuerySyntaxError("unexpected end of query", position, position)


def _bad_character(position: int, text: str) -> QueryError:
    char = text[position]
    end = position + 1
    if char == '"':
        return UnterminatedStringError(
            "unterminated string", position, len(text), hint='close it with a `"`'
        )
    hints = {
        "'": 'use double quotes: "..."',
        "&": "use AND",
        "|": "use OR",
        "!": "use NOT to negate, or `!=` to compare",
    }
    return QuerySyntaxError(f"unexpected character `{char}`", position, end, hint=hints.get(char))


def _previous_word(text: str, position: int) -> str:
    before = text[:position].rstrip()
    match = re.search(r"(\S+)$", before)
    return match.group(1) if match else ""


def _unexpected_token(error: UnexpectedToken, text: str) -> QueryError:
    token = error.token
    expected = frozenset(error.expected)
    at_end = token.type == "$END"
    start = len(text) if at_end else token.start_pos or 0
    end = len(text) if at_end else token.end_pos or start
    got = "the end of the query" if at_end else f"`{token.value}`"
    previous = _previous_word(text, start)
    opened = text[:start].count("(") - text[:start].count(")")

    if token.type == "RPAR" and "RPAR" not in expected:
        if opened <= 0:
            return UnbalancedParenthesisError(
                "unbalanced parenthesis: this `)` closes nothing",
                start,
                end,
                hint="remove it or add the matching `(`",
            )
        return MissingValueError(
            f"expected a condition before `)`, after `{previous}`",
            start,
            end,
            hint="write a condition such as `object_prefix:car`, or remove the parentheses",
        )
    if at_end and "RPAR" in expected and opened > 0:
        open_at = _unclosed_paren(text)
        return UnbalancedParenthesisError(
            "unbalanced parenthesis: missing `)`",
            start,
            end,
            hint=f"the `(` at position {open_at} is never closed",
        )
    keyword = token.type in {"_AND", "_OR", "NOT"}
    quote_it = f'`{token.value}` is a keyword; to search for the word, quote it: "{token.value}"'
    if expected <= {"BARE", "STRING"}:
        return MissingValueError(
            f"missing value after `{previous}`",
            start,
            end,
            hint=quote_it if keyword else f"write a value, e.g. `{_example_for(text, start)}`",
        )
    if expected <= {"BARE", "STRING", "STRING_STAR"}:
        return MissingValueError(
            f"missing label after `{previous}`",
            start,
            end,
            hint=quote_it if keyword else f"e.g. `{previous}car`",
        )
    if "OPERATOR" in expected:
        example = f"e.g. `{_example_for(previous + ' =', len(previous) + 2)}`"
        if previous.lower() not in ATTRIBUTES and previous.lower() not in ITEM_FIELDS:
            example += f" or `image_prefix:{previous}`"
        return QuerySyntaxError(
            f"expected an operator or `:` after `{previous}`, got {got}",
            start,
            end,
            hint=example,
        )
    if expected <= _TERM_START:
        if at_end:
            return MissingValueError(
                f"missing condition after `{previous}`",
                start,
                end,
                hint="write a condition, e.g. `object_prefix:car`",
            )
        return QuerySyntaxError(
            f"expected a condition, got {got}",
            start,
            end,
            hint="a condition starts with a field, e.g. `score >= 0.8`, or with NOT or `(`",
        )
    if opened <= 0:
        expected -= {"RPAR"}
    wanted = " or ".join(sorted(_DESCRIBE.get(name, name) for name in expected))
    return QuerySyntaxError(
        f"unexpected {got}",
        start,
        end,
        hint=f"expected {wanted}; quote values that contain spaces",
    )


def _example_for(text: str, position: int) -> str:
    before = text[:position].rstrip()
    match = re.search(r"([^\s()]+)\s*(!=|<=|>=|=|<|>)$", before)
    if match is None:
        return 'dataset = "train"'
    field = match.group(1).lower()
    examples = {"score": "0.8", "uploaded_at": "2024-01-31", "width": "640", "height": "480"}
    value = examples.get(field, '"value"')
    return f"{match.group(1)} {match.group(2)} {value}"


def _unclosed_paren(text: str) -> int:
    stack: list[int] = []
    in_string = False
    escaped = False
    for index, char in enumerate(text):
        if in_string:
            escaped = not escaped and char == "\\"
            if char == '"' and not escaped:
                in_string = False
            continue
        if char == '"':
            in_string = True
        elif char == "(":
            stack.append(index)
        elif char == ")" and stack:
            stack.pop()
    return stack[-1] if stack else 0
