"""Query text -> AST. Lark errors are mapped to ``QueryError`` here and nowhere else.

The grammar (``grammar.lark``) is parsed with LALR in strict mode; tokens come from a small
context-aware lexer built from the grammar's terminals, and the tree is built while parsing (an
inline transformer), so no intermediate parse tree is ever allocated. Field and value checks
happen as each term is reduced and raise errors that already carry their span.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from functools import cache, cached_property
from importlib.resources import files
from itertools import islice
from typing import Any, Final, assert_never

from lark import Lark, Token, Transformer
from lark.common import LexerConf
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import Lexer, LexerState, PatternStr, TerminalDef

from search.ast import (
    And,
    Comparison,
    Count,
    Label,
    Node,
    Not,
    Op,
    Or,
    Similar,
    SimilarityKind,
    Span,
)
from search.binding import bind, check_count
from search.errors import (
    CountError,
    EmptyQueryError,
    InvalidValueError,
    MissingValueError,
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
)
from search.fields import (
    ATTRIBUTES,
    INT32,
    ITEM_FIELDS,
    NUMBER_RE,
    OBJECT_ONLY_ATTRIBUTES,
    SCORE_EXAMPLE,
    SLICE_FIELD,
    lookup_field,
    lookup_label,
    read_label,
    read_value,
)
from search.similarity import MAX_K, check_placement, split
from store import schema as f

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
    "OPERATOR": f"an operator ({', '.join(Op)})",
    "COLON": "`:`",
    "TILDE": "`~`",
    "LPAR": "`(`",
    "RPAR": "`)`",
    "_AND": "AND",
    "_OR": "OR",
    "NOT": "NOT",
    "$END": "the end of the query",
}
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

    def label(self, children: list[Token]) -> Label | Similar:
        name, _, value = children
        if name.value.lower() == SLICE_FIELD:
            raise UnknownPrefixError(
                f"`{SLICE_FIELD}` is compared with `=`, not `:`",
                name.start_pos or 0,
                name.end_pos or 0,
                hint=f'write `{SLICE_FIELD} = "name"` for a saved slice',
            )
        similarity = _SIMILARITY_FIELDS.get(name.value.lower())
        if similarity is not None:
            return _similar(similarity, name, value, None)
        kind, truth = lookup_label(name.value, _span(name))
        quoted = value.type != "BARE"
        star = value.type == "STRING_STAR"
        raw = unquote(value.value[:-1] if star else value.value) if quoted else value.value
        text, prefix = read_label(raw, quoted, star, _span(value))
        span = Span(name.start_pos or 0, value.end_pos or 0)
        return Label(kind, text, prefix, span, truth=truth)

    def neighbours(self, children: list[Token]) -> Similar:
        name, _, value, tilde, k = children
        similarity = _SIMILARITY_FIELDS.get(name.value.lower())
        if similarity is None:
            raise SimilarityError(
                "`~k` (how many neighbours) only follows `similar:` or `similar_to:`",
                tilde.start_pos or 0,
                k.end_pos or 0,
                hint='e.g. `similar:"rain at night"~200`',
            )
        return _similar(similarity, name, value, k)

    def comparison(self, children: list[Token]) -> Node:
        name, operator, value = children
        if name.value.lower() in _SIMILARITY_FIELDS:
            raise SimilarityError(
                f"`{name.value.lower()}` takes a text or an item id after `:`, not an operator",
                name.start_pos or 0,
                operator.end_pos or 0,
                hint=f'e.g. `{name.value.lower()}:"{_SIMILARITY_EXAMPLE[name.value.lower()]}"`',
            )
        if name.value.lower() == SLICE_FIELD:
            return _expand_slice(name, operator, value)
        spec = lookup_field(name.value, _span(name))
        op = Op(operator.value)
        quoted = value.type == "STRING"
        raw = unquote(value.value) if quoted else value.value
        typed = read_value(spec, op, raw, quoted, _span(value))
        return Comparison(spec.name, op, typed, Span(name.start_pos or 0, value.end_pos or 0))

    def count(self, children: list[Token | Node | None]) -> Count:
        name, left, condition, right, operator, value = children
        assert isinstance(name, Token)
        assert isinstance(left, Token)
        assert isinstance(right, Token)
        assert isinstance(operator, Token)
        assert isinstance(value, Token)
        if name.value.lower() != COUNT:
            raise UnknownFieldError(
                f"unknown function `{name.value}(`",
                name.start_pos or 0,
                left.end_pos or 0,
                hint=f"the one function is `{COUNT}(...)`, e.g. `{COUNT}(object_prefix:car) >= 2`",
            )
        if condition is None:
            raise CountError(
                "a count of nothing: name what to count",
                left.start_pos or 0,
                right.end_pos or 0,
                hint=f"put a label or an attribute inside, e.g. `{COUNT}(object_prefix:car) >= 2`",
            )
        assert not isinstance(condition, Token)
        check_count(condition)
        number = _count_number(value)
        span = Span(name.start_pos or 0, value.end_pos or 0)
        return Count(condition, Op(operator.value), number, span)


COUNT: Final = "count"
_SIMILARITY_FIELDS: Final = {kind.value: kind for kind in SimilarityKind}
_SIMILARITY_EXAMPLE: Final = {"similar": "a snowy highway at night", "similar_to": "item-42"}


def _similar(kind: SimilarityKind, name: Token, value: Token, k: Token | None) -> Similar:
    """A similarity clause: its text or item id, and its ``~k`` checked."""
    span = _span(value)
    what = "text" if kind is SimilarityKind.TEXT else "item id"
    if value.type == "STRING_STAR" or (value.type == "BARE" and "*" in value.value):
        raise SimilarityError(
            f"`{kind.value}:` takes a {what}, not a wildcard",
            span.start,
            span.end,
            hint='quote a literal `*`: "a*b"',
        )
    text = unquote(value.value) if value.type == "STRING" else value.value
    if not text.strip():
        raise SimilarityError(
            f"`{kind.value}:` needs a {what}",
            span.start,
            span.end,
            hint=f'e.g. `{kind.value}:"{_SIMILARITY_EXAMPLE[kind.value]}"`',
        )
    number = None
    end = value.end_pos or 0
    if k is not None:
        number = _neighbour_count(k)
        end = k.end_pos or 0
    return Similar(kind, text, number, Span(name.start_pos or 0, end), span)


def _neighbour_count(token: Token) -> int:
    span = _span(token)
    hint = f'a whole number from 1 to {MAX_K}, e.g. `similar:"rain at night"~200`'
    if token.type != "BARE" or not token.value.isdigit():
        raise SimilarityError(
            f"`~` is followed by how many neighbours to keep, not {token.value}",
            span.start,
            span.end,
            hint=hint,
        )
    if len(token.value) > 6 or not 1 <= int(token.value) <= MAX_K:
        raise SimilarityError(
            f"`~{token.value}` is out of range: from 1 to {MAX_K} neighbours",
            span.start,
            span.end,
            hint=hint,
        )
    return int(token.value)


# --- saved slices ------------------------------------------------------------------------------
# `slice = "name"` is replaced, while parsing, by the tree of the slice's own query, as if it had
# been written in parentheses in its place: it binds like a group. Every node of that tree gets
# the span of the `slice = ...` term, so any later error (binding, counts, depth, metadata types)
# puts its caret on the term the user typed. The names come from a lookup the caller passes to
# `parse`; this module never fetches anything.

MAX_SLICE_DEPTH: Final = 8
MAX_SLICE_EXPANSIONS: Final = 64


@dataclass(frozen=True, slots=True)
class _Slices:
    """The slice lookup of one ``parse`` call and where the expansion stands."""

    lookup: Mapping[str, str]
    chain: tuple[str, ...]  # slices being expanded, outermost first
    expanded: list[int]  # expansions so far, shared by the whole call


_SLICES: ContextVar[_Slices | None] = ContextVar("autotag_slices", default=None)


def _arrow(names: Iterable[str]) -> str:
    return " -> ".join(f"`{name}`" for name in names)


def _expand_slice(name: Token, operator: Token, value: Token) -> Node:
    span = Span(name.start_pos or 0, value.end_pos or 0)
    if operator.value != "=":
        raise UnsupportedOperatorError(
            f"`{SLICE_FIELD}` is compared with `=`, not `{operator.value}`",
            operator.start_pos or 0,
            operator.end_pos or 0,
            hint=f'for items outside a slice write `NOT {SLICE_FIELD} = "..."`',
        )
    wanted = unquote(value.value) if value.type == "STRING" else value.value
    state = _SLICES.get() or _Slices({}, (), [0])
    if wanted in state.chain:
        cycle = (*state.chain[state.chain.index(wanted) :], wanted)
        raise SliceCycleError(
            f"slices refer to each other in a cycle: {_arrow(cycle)}",
            span.start,
            span.end,
            hint="change one of them so that it does not use the other",
        )
    text = state.lookup.get(wanted)
    if not wanted:
        raise UnknownSliceError(
            "empty slice name", span.start, span.end, hint='name a saved slice: `slice = "name"`'
        )
    if text is None:
        close = difflib.get_close_matches(wanted, list(state.lookup), n=1, cutoff=0.6)
        if close:
            hint = f"did you mean `{close[0]}`?"
        elif state.lookup:
            hint = "saved slices: " + ", ".join(sorted(state.lookup)[:10])
        else:
            hint = "no slices are saved; save one first"
        inside = f" (used by {_arrow(state.chain)})" if state.chain else ""
        message = f"unknown slice `{wanted}`{inside}"
        raise UnknownSliceError(message, span.start, span.end, hint=hint)
    if len(state.chain) >= MAX_SLICE_DEPTH:
        raise SliceTooDeepError(
            f"slices nest deeper than {MAX_SLICE_DEPTH} levels: {_arrow((*state.chain, wanted))}",
            span.start,
            span.end,
            hint="use the inner slice's query directly",
        )
    state.expanded[0] += 1
    if state.expanded[0] > MAX_SLICE_EXPANSIONS:
        raise SliceTooDeepError(
            f"the query expands more than {MAX_SLICE_EXPANSIONS} slices",
            span.start,
            span.end,
            hint="use fewer slices, or slices that use fewer slices",
        )
    token = _SLICES.set(replace(state, chain=(*state.chain, wanted)))
    try:
        tree = _parse(text, max_length=len(text))
    except SliceError as error:
        # Already says which slices; the caret moves out to the term in the enclosing text.
        raise type(error)(error.message, span.start, span.end, hint=error.hint) from None
    except QueryError as error:
        raise SliceError(
            f"slice `{wanted}` is not a valid query here: {error.message}",
            span.start,
            span.end,
            hint=error.hint,
        ) from None
    finally:
        _SLICES.reset(token)
    return respan(tree, span)


def respan(node: Node, span: Span) -> Node:
    """``node`` with every span in it set to ``span``."""
    match node:
        case Label() | Comparison() | Similar():
            return replace(node, span=span)
        case Not(operand):
            return Not(respan(operand, span), span)
        case And(operands):
            return And(tuple(respan(child, span) for child in operands), span)
        case Or(operands):
            return Or(tuple(respan(child, span) for child in operands), span)
        case Count(condition=condition):
            return replace(node, condition=respan(condition, span), span=span)
        case _:
            assert_never(node)


def _count_number(token: Token) -> int:
    """The whole number, zero or more, that a count is compared with."""
    span = _span(token)
    text = token.value
    hint = f"compare a count with a whole number, e.g. `{COUNT}(object_prefix:car) >= 2`"
    if token.type != "BARE" or not NUMBER_RE.fullmatch(text):
        if token.type != "BARE" and NUMBER_RE.fullmatch(unquote(text)):
            hint = f"remove the quotes: {unquote(text)}"
        shown = f"`{text}`" if token.type == "BARE" else text
        raise TypeMismatchError(
            f"a count is compared with a whole number, not {shown}",
            span.start,
            span.end,
            hint=hint,
        )
    if float(text) < 0:
        problem = f"a count is never negative, not `{text}`"
    elif any(c in text for c in ".eE"):
        problem = f"a count is a whole number written in digits, not `{text}`"
    elif len(text.lstrip("+-")) > 10 or int(text) > INT32[1]:
        problem = f"count `{text}` is out of range"
        hint = f"counts go up to {INT32[1]}"
    else:
        return int(text)
    raise InvalidValueError(problem, span.start, span.end, hint=hint)


def _keywords(terminals: Iterable[TerminalDef]) -> dict[str, str]:
    """Keyword (lower case) -> terminal name: the grammar's terminals that are a literal word."""
    return {
        t.pattern.value.lower(): t.name
        for t in terminals
        if isinstance(t.pattern, PatternStr) and t.pattern.value.isalpha()
    }


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

        punctuation = ("OPERATOR", "COLON", "TILDE", "LPAR", "RPAR")
        # Where a condition may start or continue, a word is a field (so `image_prefix:car`
        # splits at the colon); after `:` or an operator it is a value, colons included.
        self.term = master("WS", "STRING_STAR", "STRING", *punctuation, "FIELD", "BARE")
        self.value = master("WS", "STRING_STAR", "STRING", "BARE", *punctuation)
        self.keywords = _keywords(conf.terminals)

    def lex(self, lexer_state: LexerState, parser_state: Any) -> Iterator[Token]:
        text = lexer_state.text.text
        assert isinstance(text, str)
        return self.tokens(text)

    def tokens(self, text: str) -> Iterator[Token]:
        position, end = 0, len(text)
        previous = ""
        while position < end:
            pattern = self.value if previous in ("COLON", "OPERATOR", "TILDE") else self.term
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


_BUILDER: Final = _Builder()


@cache
def _parser() -> Lark:
    grammar = files("search").joinpath("grammar.lark").read_text(encoding="utf-8")
    return Lark(
        grammar,
        parser="lalr",
        lexer=_Lexer,
        strict=True,
        transformer=_BUILDER,
    )


_LABEL_VALUES: Final = frozenset({"BARE", "STRING", "STRING_STAR"})
_VALUES: Final = frozenset({"BARE", "STRING"})


def _one_term(text: str) -> Node | None:
    """A query that is exactly one label or one comparison (what dashboards store most), built
    by the builder method the parser would call for it, without running the parser; None for
    any other text, which the parser reads (and reports errors in).

    The grammar's ``start`` reaches ``atom`` through rules that only pass their one child on,
    so for three tokens ``FIELD COLON label_value`` or ``FIELD OPERATOR value`` the parser's
    result is exactly ``label`` or ``comparison`` of them (tests/search/test_parser.py checks
    both ways agree).
    """
    try:
        tokens = list(islice(_lexer().tokens(text), 4))
    except UnexpectedCharacters:
        return None
    if len(tokens) != 3 or tokens[0].type != "FIELD":
        return None
    if tokens[1].type == "COLON" and tokens[2].type in _LABEL_VALUES:
        return _BUILDER.label(tokens)
    if tokens[1].type == "OPERATOR" and tokens[2].type in _VALUES:
        return _BUILDER.comparison(tokens)
    return None


@cache
def _lexer() -> _Lexer:
    """A lexer of our own, to re-read the text in front of a syntax error."""
    return _Lexer(_parser().lexer_conf)


# Lexical facts, read from the grammar (their single source) for the renderer and the messages.
_KEYWORD_TERMINALS: Final = _keywords(_parser().terminals)
KEYWORDS: Final = frozenset(_KEYWORD_TERMINALS)
# What a bare (unquoted) value or label may look like: the grammar's BARE terminal.
BARE_RE: Final = re.compile(_parser().get_terminal("BARE").pattern.to_regexp())


def parse(
    text: str,
    *,
    max_length: int = DEFAULT_MAX_LENGTH,
    slices: Mapping[str, str] | None = None,
) -> Node:
    """Parse a query into its AST; raises only :class:`QueryError` subclasses.

    ``slices`` maps saved slice names to their query text: each ``slice = "name"`` term is
    replaced by that query's tree, as if written in parentheses (see ``search.slices``).
    """
    token = _SLICES.set(_Slices(slices or {}, (), [0]))
    try:
        return _parse(text, max_length)
    except QueryError as error:
        error.query = text
        raise
    finally:
        _SLICES.reset(token)


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
        tree = _one_term(text) or _parser().parse(text)
    except VisitError as error:  # only if Lark ever wraps a transformer error
        if isinstance(error.orig_exc, QueryError):
            raise error.orig_exc from None
        raise
    except UnexpectedInput as error:
        raise _syntax_error(error, text) from None
    assert isinstance(tree, Label | Comparison | Not | And | Or | Count | Similar)
    geometry, similarity = _check_depth(tree)
    if similarity:
        check_placement(tree)
    if geometry:
        # raises where box geometry binds to an image label (in the filter a similarity
        # clause leaves: the rest of the query)
        rest = split(tree)[1] if similarity else tree
        if rest is not None:
            bind(rest)
    return tree


def _check_depth(root: Node) -> tuple[bool, bool]:
    """Refuses a tree nested too deep; says whether it mentions box geometry, and similarity."""
    geometry = similarity = False
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
            case Count(condition=condition):
                stack.append((condition, depth + 1))
            case Comparison(field=name):
                geometry = geometry or name in OBJECT_ONLY_ATTRIBUTES
            case Similar():
                similarity = True
            case _:
                pass
    return geometry, similarity


def _syntax_error(error: UnexpectedInput, text: str) -> QueryError:
    """The one place where Lark's exceptions become query errors."""
    if isinstance(error, UnexpectedCharacters):
        return _bad_character(error.pos_in_stream or 0, text)
    if isinstance(error, UnexpectedToken):
        return _unexpected_token(error, text)
    position = len(text)
    return QuerySyntaxError("unexpected end of the query", position, position)


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


def _open_parens(text: str, stop: int) -> tuple[int, ...]:
    """Positions of the ``(`` still open at ``stop``, innermost last.

    The text is read by the query lexer itself, so a parenthesis inside a quoted string
    (escapes included) is text, never a parenthesis.
    """
    stack: list[int] = []
    for token in _lexer().tokens(text[:stop]):
        if token.type == "LPAR":
            stack.append(token.start_pos or 0)
        elif token.type == "RPAR" and stack:
            stack.pop()
    return tuple(stack)


@dataclass(frozen=True)
class _Stop:
    """Where the parser stopped: what the message table below is written against.

    The table's templates read these attributes as ``{s.previous}``, ``{s.got}``...
    """

    text: str
    token: Token
    expected: frozenset[str]

    @cached_property
    def open_parens(self) -> tuple[int, ...]:
        return _open_parens(self.text, self.start)

    @property
    def at_end(self) -> bool:
        return self.token.type == "$END"

    @property
    def start(self) -> int:
        # At the end LALR reports the last token's position; the caret goes past the text.
        return len(self.text) if self.at_end else self.token.start_pos or 0

    @property
    def end(self) -> int:
        return len(self.text) if self.at_end else self.token.end_pos or self.start

    @property
    def got(self) -> str:
        return _DESCRIBE["$END"] if self.at_end else f"`{self.token.value}`"

    @property
    def previous(self) -> str:
        return _previous_word(self.text, self.start)

    @property
    def open_at(self) -> int:
        return self.open_parens[-1]

    @property
    def value_example(self) -> str:
        return _example_for(self.text, self.start)

    @property
    def comparison_examples(self) -> str:
        previous = self.previous
        examples = f"`{_example_for(previous + ' =', len(previous) + 2)}`"
        if previous.lower() not in ATTRIBUTES and previous.lower() not in ITEM_FIELDS:
            examples += f" or `image_prefix:{previous}`"
        return examples

    @property
    def wanted(self) -> str:
        expected = self.expected if self.open_parens else self.expected - {"RPAR"}
        return " or ".join(sorted(_DESCRIBE.get(name, name) for name in expected))


@dataclass(frozen=True, slots=True)
class _Message:
    """One row of the message table: the conditions (``None``: any) and what to say.

    ``message`` and ``hint`` are ``str.format`` templates over the :class:`_Stop` ``s``.
    """

    error: type[QuerySyntaxError]
    message: str
    hint: str | None = None
    # The unexpected token is one of these terminals ("$END": the end of the query).
    found: frozenset[str] | None = None
    # The parser would have accepted this terminal there...
    expects: str | None = None
    # ...or nothing but these.
    expects_only: frozenset[str] | None = None
    # Some `(` before the token is still open.
    in_parens: bool | None = None

    def matches(self, stop: _Stop) -> bool:
        return (
            (self.found is None or stop.token.type in self.found)
            and (self.expects is None or self.expects in stop.expected)
            and (self.expects_only is None or stop.expected <= self.expects_only)
            and (self.in_parens is None or self.in_parens == bool(stop.open_parens))
        )


_RPAR: Final = frozenset({"RPAR"})
_END: Final = frozenset({"$END"})
_KEYWORD: Final = frozenset(_KEYWORD_TERMINALS.values())
_VALUE: Final = frozenset({"BARE", "STRING"})
_LABEL: Final = _VALUE | {"STRING_STAR"}
_TERM_START: Final = frozenset({"FIELD", "NOT", "LPAR"})
_QUOTE_IT: Final = (
    '`{s.token.value}` is a keyword; to search for the word, quote it: "{s.token.value}"'
)
_A_CONDITION: Final = "write a condition, e.g. `object_prefix:car`"

# The syntax messages, first matching row first. Rows test what the parser expected rather
# than label example queries for `UnexpectedInput.match_examples()`: Lark compares parser
# states including the stack depth, so `score >=`, `(score >=` and `a AND score >=` are three
# different states, and every example would have to be repeated at every nesting depth.
_MESSAGES: Final = (
    _Message(
        UnbalancedParenthesisError,
        "unbalanced parenthesis: this `)` closes nothing",
        "remove it or add the matching `(`",
        found=_RPAR,
        in_parens=False,
    ),
    _Message(
        MissingValueError,
        "expected a condition before `)`, after `{s.previous}`",
        "write a condition such as `object_prefix:car`, or remove the parentheses",
        found=_RPAR,
    ),
    _Message(
        UnbalancedParenthesisError,
        "unbalanced parenthesis: missing `)`",
        "the `(` at position {s.open_at} is never closed",
        found=_END,
        expects="RPAR",
        in_parens=True,
    ),
    _Message(
        MissingValueError,
        "missing value after `{s.previous}`",
        _QUOTE_IT,
        found=_KEYWORD,
        expects_only=_VALUE,
    ),
    _Message(
        MissingValueError,
        "missing value after `{s.previous}`",
        "write a value, e.g. `{s.value_example}`",
        expects_only=_VALUE,
    ),
    _Message(
        MissingValueError,
        "missing label after `{s.previous}`",
        _QUOTE_IT,
        found=_KEYWORD,
        expects_only=_LABEL,
    ),
    _Message(
        MissingValueError,
        "missing label after `{s.previous}`",
        "e.g. `{s.previous}car`",
        expects_only=_LABEL,
    ),
    _Message(
        QuerySyntaxError,
        "a count needs a comparison after its `)`, got {s.got}",
        f"compare it with a whole number, e.g. `{COUNT}(object_prefix:car) >= 2`",
        expects_only=frozenset({"OPERATOR"}),
    ),
    _Message(
        QuerySyntaxError,
        "expected an operator or `:` after `{s.previous}`, got {s.got}",
        "e.g. {s.comparison_examples}",
        expects="OPERATOR",
    ),
    _Message(
        MissingValueError,
        "missing condition after `{s.previous}`",
        _A_CONDITION,
        found=_END,
        expects_only=_TERM_START,
    ),
    _Message(
        QuerySyntaxError,
        "expected a condition, got {s.got}",
        f"a condition starts with a field, e.g. `{f.PRED_SCORE} >= {SCORE_EXAMPLE}`,"
        " or with NOT or `(`",
        expects_only=_TERM_START,
    ),
    _Message(
        QuerySyntaxError,
        "unexpected end of the query",
        "expected {s.wanted}",
        found=_END,
    ),
    _Message(
        QuerySyntaxError,
        "unexpected {s.got}",
        "expected {s.wanted}; quote values that contain spaces",
    ),
)


def _unexpected_token(error: UnexpectedToken, text: str) -> QueryError:
    stop = _Stop(text, error.token, frozenset(error.expected))
    row = next(row for row in _MESSAGES if row.matches(stop))
    hint = row.hint.format(s=stop) if row.hint is not None else None
    return row.error(row.message.format(s=stop), stop.start, stop.end, hint=hint)


_OPERATOR_AT_END: Final = re.compile(
    rf"([^\s()]+)\s*({_parser().get_terminal('OPERATOR').pattern.to_regexp()})$"
)
# After `count(...)`: the operator follows a `)`.
_COUNT_OPERATOR_AT_END: Final = re.compile(
    rf"\)\s*({_parser().get_terminal('OPERATOR').pattern.to_regexp()})$"
)


def _example_for(text: str, position: int) -> str:
    before = text[:position].rstrip()
    if count := _COUNT_OPERATOR_AT_END.search(before):
        return f"{COUNT}(object_prefix:car) {count.group(1)} 2"
    if before.endswith("~"):
        return 'similar:"rain at night"~200'  # how many neighbours
    match = _OPERATOR_AT_END.search(before)
    if match is None:
        return 'dataset = "train"'
    field = match.group(1).lower()
    examples = {
        f.PRED_SCORE: str(SCORE_EXAMPLE),
        f.UPLOADED_AT: "2024-01-31",
        f.WIDTH: "640",
        f.HEIGHT: "480",
        f.TAGGED_BY: '"model_v2"',
    }
    value = examples.get(field, '"value"')
    return f"{match.group(1)} {match.group(2)} {value}"
