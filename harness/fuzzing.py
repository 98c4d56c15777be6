"""Hostile query text: generators, and the checks every answer to it must pass.

Two layers, shared by ``bench/fuzz_queries.py`` (100,000+ cases) and ``test_fuzz.py`` (CI):

- *direct*: ``search.parse`` then ``translate`` (and the API's own ``parse_query``, which adds
  inner hits and sorts). Either a ``QueryError`` whose span lies inside the text, or DSL built
  only from the query types the language needs: never ``script``, ``regexp``,
  ``query_string``, ``wildcard``, ``fuzzy``... Any other exception is a finding.
- *http*: the same text posted to the real app (``/v1/search``, ``/v1/count``,
  ``/v1/translate``) in front of a real node: 200, or a 4xx in the one error envelope; an
  ``invalid_query`` error carries ``start``/``end`` inside the text. Any 5xx is a finding.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx

from api.models import SortKey
from api.query import parse_query
from search import QueryError, parse, render, translate
from store import schema as f
from store.mapping import item_mapping

REPO: Final = Path(__file__).resolve().parents[1]
MAX_LENGTH: Final = 4096  # the API's default ``query_max_length``

# Query types (and their parameters) the translator may emit; anything else is a finding.
ALLOWED_KEYS: Final = frozenset(
    {
        # compound and leaf queries
        "bool", "filter", "must", "must_not", "should", "minimum_should_match",
        "nested", "path", "query", "score_mode", "ignore_unmapped",
        "term", "terms", "prefix", "range", "exists", "match_all", "match_none",
        "value", "field", "boost", "case_insensitive",
        # counts: "at least n" is a summed nested score kept from min_score on
        "function_score", "constant_score", "min_score",
        "gt", "gte", "lt", "lte", "format", "time_zone",
        # inner hits and sorts (the API's additions)
        "inner_hits", "name", "_source", "size", "order", "mode", "missing", "unmapped_type",
    }
)  # fmt: skip
# Never allowed anywhere in a translation, whatever the context.
FORBIDDEN_KEYS: Final = frozenset(
    {
        "script", "script_score", "script_fields", "runtime_mappings", "regexp",
        "query_string", "simple_query_string", "wildcard", "fuzzy", "more_like_this",
        "percolate", "functions", "field_value_factor", "intervals", "span_multi", "terms_set",
        "match",
        "match_phrase", "match_phrase_prefix", "combined_fields", "multi_match", "params",
        "stored_fields", "docvalue_fields",
    }
)  # fmt: skip
# Keys whose children are field names (user text may reach a field name only as metadata.*).
_FIELD_KEYED: Final = frozenset({"term", "terms", "prefix", "range"})
_SURROGATE = re.compile("[\ud800-\udfff]")  # echoed back as U+FFFD (not encodable)


def _mapped_fields(properties: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every field the item mapping declares, dotted (``object_predictions.score``...)."""
    names: list[str] = []
    for name, definition in properties.items():
        names.append(f"{prefix}{name}")
        names += _mapped_fields(definition.get("properties", {}), f"{prefix}{name}.")
    return names


# A translation may name any mapped field, or any key under metadata (user text).
_KNOWN_FIELD = re.compile(
    rf"^({'|'.join(re.escape(name) for name in _mapped_fields(item_mapping()['properties']))}"
    rf"|{f.METADATA}\.[^\W\d][\w.\-]*)$"
)


# --- inputs -----------------------------------------------------------------------------------

FALLBACK_SEEDS: Final = (
    "image_prefix:weather_clear AND score >= 0.8",
    "object_prefix:car AND score < 0.5",
    "object_prefix:car* AND NOT status = rejected",
    'training_set = "model_v2" OR model != clip',
    "(image_prefix:weather_rain OR image_prefix:weather_snow) AND score = medium",
    "uploaded_at >= 2024-01-15 AND uploaded_at < 2024-02-01T10:00:00+02:00",
    'metadata.city = "Oslo" AND metadata.camera >= 3 AND width > 100',
    "autotag_status = reviewed AND NOT object_prefix:pedestrian",
    'object_prefix:"traffic light" dataset = train',
    "NOT (object_prefix:car OR object_prefix:truck) AND image_prefix:scene",
    "count(object_prefix:car AND score >= 0.8) >= 3 AND dataset = drives",
    "count(object_prefix:pedestrian) = 0 OR count(image_prefix:weather) != 2",
    'NOT tagged_by = "model_v3" AND tagged_by = model_v2',
    "object_prefix:pedestrian AND box_area < 1024 AND score < 0.5",
    "relative_area > 0.05 OR box_width >= 100 AND box_height < 32",
)
FRAGMENTS: Final = (
    "image_prefix:", "object_prefix:", "score", "status", "dataset", "uploaded_at", "item_id",
    "metadata.x", "metadata.", "training_set", "model", "autotag_status", "width", "AND", "and",
    "OR", "or", "NOT", "not", "(", ")", "((", "))", "=", "!=", "<", "<=", ">", ">=", "==", ":",
    '"', '\\"', "\\", "*", "**", "car", "car*", "*car", "c*r", '"car"*', "0.5", "-1", "1e3",
    "1e999", "nan", "inf", "-0", "0x10", "high", "HIGH", "negative", "pending", "rejected",
    "2024-01-31", "2024-02-30", "2024-01-31T10:00:00Z", "2024-01-31T25:00", "99999-01-01",
    " ", "  ", "\t", "\n", "\r\n", "'", "&&", "||", "!", "#", "/", "/.*/", "~", "^2", "?", "[",
    "]", "{", "}", "TO", "_exists_:", "*:*", "script", "regexp", "query_string", "@", "$",
    "%", ";", ",", "count(", "COUNT", "count()", ") >= 2", ") = 0", "tagged_by", "box_area",
    "box_width", "box_height", "relative_area", "1024", "0.05", "1.5", "-3", "\x00",
    "\x1b[31m", "\u200b", "\u202e", "\ufeff", "é", "ß", "İ", "ǅ",
    "車", "🚗", "\U0001f600\u200d", "\uff41\uff4e\uff44", "\uff21\uff2e\uff24", "\u0301", "\ud800",
)  # fmt: skip
_UNICODE_BLOCKS: Final = (
    (0x00, 0x20), (0x20, 0x7F), (0x7F, 0xA0), (0xA0, 0x2FF), (0x300, 0x36F),
    (0x590, 0x6FF), (0x2000, 0x206F), (0x3000, 0x30FF), (0x4E00, 0x4FFF),
    (0xD800, 0xDFFF), (0xFE00, 0xFEFF), (0xFF00, 0xFFEF), (0x1F300, 0x1F64F),
    (0xE0000, 0xE007F), (0x10FFF0, 0x10FFFF),
)  # fmt: skip


def seed_queries() -> list[str]:
    """Valid queries: the reference's examples and the golden files' queries."""
    seeds = set(FALLBACK_SEEDS)
    docs = REPO / "docs" / "query-language.md"
    if docs.exists():
        # A block holds one query (over one or more lines) and its `# matches:` line.
        text = docs.read_text(encoding="utf-8")
        for block in re.findall(r"```query(?: \w+)?\n(.*?)```", text, re.S):
            lines = [line for line in block.splitlines() if line and not line.startswith("#")]
            seeds.add("\n".join(lines))
    for golden in sorted((REPO / "tests" / "search" / "golden").glob("*.txt")):
        for line in golden.read_text(encoding="utf-8").splitlines():
            if line.startswith("query: "):
                raw = line.removeprefix("query: ")
                if raw.startswith('"'):
                    try:
                        raw = json.loads(raw)
                    except ValueError:
                        continue
                seeds.add(raw)
    valid = []
    for text in sorted(seeds):
        try:
            parse(text)
        except QueryError:
            continue
        valid.append(text)
    return valid


def _random_char(rng: random.Random) -> str:
    low, high = rng.choice(_UNICODE_BLOCKS)
    return chr(rng.randrange(low, high + 1))


def _tokens(text: str) -> list[str]:
    return re.findall(r'"(?:[^"\\]|\\.)*"\*?|[\w.:*+\-]+|\s+|.', text)


def mutate(text: str, rng: random.Random) -> str:
    """One to four grammar-aware edits of a valid query."""
    tokens = _tokens(text) or [""]
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(tokens))
        op = rng.randrange(9)
        if op == 0:
            del tokens[i]
        elif op == 1:
            tokens.insert(i, rng.choice(FRAGMENTS))
        elif op == 2:
            tokens[i] = rng.choice(FRAGMENTS)
        elif op == 3:
            j = rng.randrange(len(tokens))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif op == 4:
            tokens.insert(i, tokens[rng.randrange(len(tokens))])
        elif op == 5:  # damage inside a token
            token = tokens[i]
            k = rng.randrange(len(token) + 1)
            tokens[i] = token[:k] + _random_char(rng) + token[k + 1 :]
        elif op == 6:
            tokens = ["(", *tokens, ")"] if rng.random() < 0.5 else ["NOT ", *tokens]
        elif op == 7:
            tokens[i] = tokens[i].upper() if rng.random() < 0.5 else tokens[i].lower()
        else:
            cut = rng.randrange(len(tokens) + 1)
            tokens = tokens[:cut]
        if not tokens:
            tokens = [""]
    return "".join(tokens)


def combine(seeds: Sequence[str], rng: random.Random) -> str:
    """Valid queries joined by random connectives, sometimes grouped."""
    parts = []
    for _ in range(rng.randint(2, 6)):
        part = rng.choice(seeds)
        if rng.random() < 0.3:
            part = f"({part})"
        if rng.random() < 0.2:
            part = f"NOT {part}"
        parts.append(part)
    glue = rng.choice((" AND ", " OR ", " ", " and ", "\n"))
    return glue.join(parts)


def random_text(rng: random.Random) -> str:
    size = rng.choice((1, 2, 5, 10, 40, 200))
    kind = rng.randrange(4)
    if kind == 0:
        return "".join(chr(rng.randrange(32, 127)) for _ in range(size))
    if kind == 1:
        return "".join(_random_char(rng) for _ in range(size))
    if kind == 2:
        return "".join(rng.choice(FRAGMENTS) for _ in range(size))
    return bytes(rng.randrange(256) for _ in range(size)).decode("latin-1")


def huge(rng: random.Random) -> str:
    """Long and deep inputs: near and far beyond the length limit, deep nesting, long chains."""
    seed = rng.choice(FALLBACK_SEEDS)
    n = rng.choice((10, 21, 100, 1000, 2000, 5000, 10_000))
    choice = rng.randrange(10)
    if choice == 0:
        return "(" * n + seed + ")" * n
    if choice == 1:
        return "(" * n + seed  # unbalanced
    if choice == 2:
        return "NOT " * n + seed
    if choice == 3:
        return " OR ".join([seed] * max(1, n // 20))
    if choice == 4:
        return " AND ".join(f"object_prefix:l{i}" for i in range(n // 10 + 1))
    if choice == 5:
        return "x" * rng.choice((MAX_LENGTH - 1, MAX_LENGTH, MAX_LENGTH + 1, 100_000))
    if choice == 6:
        return f'object_prefix:"{"a" * rng.choice((1000, 4080, 50_000))}"'
    if choice == 7:
        return " " * rng.choice((MAX_LENGTH, 10_000)) + seed
    if choice == 8:
        return "(" * n + ")" * n
    return "\x00" * rng.choice((1, 100, 5000))


def cases(count: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """``count`` (category, text) pairs, deterministic for a given ``seed``."""
    rng = random.Random(seed)
    seeds = seed_queries()
    makers: list[tuple[str, float, Callable[[], str]]] = [
        ("valid", 0.05, lambda: rng.choice(seeds)),
        ("mutated", 0.45, lambda: mutate(rng.choice(seeds), rng)),
        ("combined", 0.10, lambda: combine(seeds, rng)),
        ("mutated_combined", 0.10, lambda: mutate(combine(seeds, rng), rng)),
        ("random", 0.22, lambda: random_text(rng)),
        ("huge", 0.08, lambda: huge(rng)),
    ]
    weights = [w for _, w, _ in makers]
    for _ in range(count):
        name, _, make = rng.choices(makers, weights=weights)[0]
        yield name, make()


# --- checks ------------------------------------------------------------------------------------


def dsl_violations(dsl: Any, where: str = "$") -> list[str]:
    """Every forbidden query type, unknown key or unknown field in a translation."""
    found: list[str] = []
    if isinstance(dsl, Mapping):
        for key, value in dsl.items():
            path = f"{where}.{key}"
            if key in FORBIDDEN_KEYS:
                found.append(f"{path}: forbidden `{key}`")
            if key in _FIELD_KEYED and isinstance(value, Mapping):
                for name, inner in value.items():
                    if not _KNOWN_FIELD.match(str(name)):
                        found.append(f"{path}: unknown field {name!r}")
                    found += dsl_violations(inner, f"{path}.{name}")
                continue
            if key not in ALLOWED_KEYS:
                found.append(f"{path}: unexpected key `{key}`")
            found += dsl_violations(value, path)
    elif isinstance(dsl, list):
        for i, value in enumerate(dsl):
            found += dsl_violations(value, f"{where}[{i}]")
    elif isinstance(dsl, float) and (dsl != dsl or dsl in (float("inf"), float("-inf"))):
        found.append(f"{where}: non-finite number")
    return found


@dataclass
class Tally:
    """Outcome counts, plus findings (broken guarantees) with a few examples each."""

    outcomes: Counter[str] = field(default_factory=Counter)
    findings: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def finding(self, kind: str, text: str, detail: str = "") -> None:
        self.findings[kind] += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < 5:
            shown.append(f"{text[:120]!r} {detail}"[:400])


def check_direct(text: str, tally: Tally, *, max_length: int = MAX_LENGTH) -> None:
    """Parse, translate and build the API's search pieces for ``text``; tally what happened."""
    try:
        tree = parse(text, max_length=max_length)
    except QueryError as error:
        tally.outcomes[f"rejected:{error.code}"] += 1
        if not (0 <= error.start <= error.end <= len(text)):
            tally.finding("span_outside_text", text, f"{error.start}..{error.end}")
        if error.query != text or not error.render().startswith("error: "):
            tally.finding("bad_error_rendering", text)
        return
    except RecursionError:
        tally.finding("recursion_error", text)
        return
    except Exception as error:
        tally.finding("non_query_error", text, repr(error))
        return
    tally.outcomes["accepted"] += 1
    try:
        dsls: list[Any] = [translate(tree), translate(tree, inner_hits=True)]
        if len(text) <= max_length:
            parsed = parse_query(text, max_length)
            dsls.append(parsed.hits_query)
            sorts = [parsed.sort(key, order) for key in SortKey for order in ("asc", "desc")]
            # A sort is a list of {field: options}: the same checks as a field-keyed query.
            dsls += [{"term": entry} for sort in sorts for entry in sort]
        again = parse(render(tree), max_length=max(max_length, 10 * len(text)))
    except Exception as error:
        tally.finding("translate_failed", text, repr(error))
        return
    if again != tree:
        tally.finding("render_round_trip", text, render(tree))
    for dsl in dsls:
        for violation in dsl_violations(dsl):
            tally.finding("dsl_violation", text, violation)


def _as_received(text: str) -> str:
    """``text`` as the server sees and echoes it: a JSON escape pair becomes one character."""
    return _SURROGATE.sub("\ufffd", json.loads(json.dumps(text)))


def check_response(text: str, endpoint: str, status: int, body: Any, tally: Tally) -> None:
    """The HTTP contract: 200, or a 4xx envelope; ``invalid_query`` carries its span."""
    code = ""
    if isinstance(body, Mapping) and isinstance(body.get("error"), Mapping):
        code = str(body["error"].get("code"))
    tally.outcomes[f"http {status} {code}".rstrip()] += 1
    if status >= 500:
        tally.finding("http_5xx", text, f"{endpoint} {status} {str(body)[:200]}")
        return
    if status == 200:
        if endpoint == "translate":
            for violation in dsl_violations(body.get("dsl")):
                tally.finding("dsl_violation", text, violation)
        return
    if not (isinstance(body, Mapping) and set(body) == {"error"}):
        tally.finding("not_an_envelope", text, f"{status} {str(body)[:200]}")
        return
    error = body["error"]
    if set(error) != {"code", "message", "details"}:
        tally.finding("not_an_envelope", text, f"{status} {str(body)[:200]}")
        return
    if code == "invalid_query":
        details = error["details"]
        start, end = details.get("start"), details.get("end")
        query = details.get("query")
        if not (isinstance(start, int) and isinstance(end, int)):
            tally.finding("rejection_without_position", text, str(details)[:200])
        elif not (0 <= start <= end <= len(text)) or query != _as_received(text):
            tally.finding("span_outside_text", text, f"{start}..{end}")
        if status != 400:
            tally.finding("invalid_query_not_400", text, str(status))
    elif code != "validation_error":
        tally.finding("unexpected_rejection", text, f"{status} {code}")


ENDPOINTS: Final = ("search", "search", "count", "translate")


async def check_http(
    client: httpx.AsyncClient,
    texts: Sequence[str],
    tally: Tally,
    *,
    concurrency: int = 8,
) -> None:
    """Post every text to the app (rotating over the query endpoints), checking each answer.

    Bodies are encoded with ``ensure_ascii`` so that lone surrogates and NUL reach the server
    as JSON escapes, the way a hostile client would send them.
    """
    queue = list(enumerate(texts))
    queue.reverse()

    async def worker() -> None:
        while queue:
            i, text = queue.pop()
            endpoint = ENDPOINTS[i % len(ENDPOINTS)]
            payload = json.dumps({"query": text}, ensure_ascii=True).encode()
            response = await client.post(
                f"/v1/{endpoint}", content=payload, headers={"content-type": "application/json"}
            )
            try:
                body = response.json()
            except ValueError:
                body = response.text
            check_response(text, endpoint, response.status_code, body, tally)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


SPECIAL_HTTP_CASES: Final = (
    "(" * 10_000 + "object_prefix:car" + ")" * 10_000,
    "(" * 2000 + "object_prefix:car" + ")" * 2000,
    "NOT " * 1000 + "object_prefix:car",
    "(NOT " * 500 + "object_prefix:car" + ")" * 500,
    " OR ".join(["object_prefix:car"] * 200),
    " AND ".join(f"object_prefix:l{i}" for i in range(250)),
    "x" * MAX_LENGTH,
    "x" * (MAX_LENGTH + 1),
    "a" * 1_000_000,
    "\x00",
    "object_prefix:car\x00",
    'object_prefix:"\x00"',
    "\ud800",
    'object_prefix:"\udfff"',
    "object_prefix:\u202ecar",
    "\ufeffobject_prefix:car",
    "object_prefix:car\u0301",
    'metadata.a..b = "x"',
    "metadata.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p = 1",
    "metadata._source = 1",
    "metadata._id = 1",
    "score < 1e308",
    "score < 1e309",
    "width > 99999999999999999999999",
    "uploaded_at > 9999-12-31T23:59:59.999Z",
    "uploaded_at > 0000-01-01",
    'object_prefix:"' + "\\" * 4000 + '"',
    'object_prefix:"a*b"*',
    "",
    " ",
    "\n\t\r",
)


async def run_http(
    settings: Any, texts: Sequence[str], tally: Tally, *, concurrency: int = 8
) -> None:
    """``check_http`` against a fresh app (lifespan and all) built from ``settings``."""
    from api.app import create_app  # the API is only needed for this layer

    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            await check_http(client, texts, tally, concurrency=concurrency)
