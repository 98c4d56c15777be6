"""Similarity clauses: where they may stand, how many neighbours, and the kNN query they become.

The semantics (docs/query-language.md, "Similar items"), which ``search.evaluate.nearest``
implements exactly with brute-force cosine and Elasticsearch approximately (HNSW):

- ``similar:"text"`` ranks items by the cosine similarity of their image embedding with the
  text's embedding (the CLIP text tower of the model that made the index's embeddings);
  ``similar_to:ID`` by the cosine similarity with item ``ID``'s image embedding, ``ID`` itself
  left out of the answer.
- Everything ANDed with the clause is the filter: it selects which items are ranked, before
  ranking (the kNN pre-filter), exactly as the same conditions would select items without it.
  Items without an embedding are never ranked.
- The answer is the ``k`` nearest of those (``k`` is ``DEFAULT_K`` unless written ``~k``, from 1
  to ``MAX_K``), most similar first; equal similarities in item-id order.
- The clause may only be ANDed with the rest, at any depth of AND: never under ``OR``, ``NOT``
  or ``count(...)``, and one per query. Elsewhere it is an error pointing at the clause.

The language stays pure: the caller (the API) turns the text or the item into a vector and
hands it to :func:`ranked_query`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from search.ast import And, Count, Node, Not, Or, Similar, SimilarityKind
from search.errors import SimilarityError
from store import schema as f

Query = dict[str, Any]

DEFAULT_K: Final = 100
MAX_K: Final = 10_000
# Candidates each shard's HNSW search visits: CANDIDATES_PER_NEIGHBOUR per neighbour asked
# for, at least MIN_CANDIDATES, at most MAX_K (Elasticsearch's limit). Chosen by measurement
# (docs/benchmarks.md, "Embeddings: filtered kNN"): recall@10 and @100 against brute force.
CANDIDATES_PER_NEIGHBOUR: Final = 16
MIN_CANDIDATES: Final = 500
_EXAMPLE: Final = 'similar:"a snowy highway at night" AND object_prefix:car'


def neighbours(clause: Similar) -> int:
    """How many items the clause keeps: its ``~k`` or the default."""
    return DEFAULT_K if clause.k is None else clause.k


def num_candidates(k: int) -> int:
    return min(MAX_K, max(MIN_CANDIDATES, CANDIDATES_PER_NEIGHBOUR * k))


def has_similarity(root: Node) -> bool:
    return similarity_clause(root) is not None


def similarity_clause(root: Node) -> Similar | None:
    """The first similarity clause anywhere in ``root``, if any."""
    stack = [root]
    while stack:
        node = stack.pop()
        match node:
            case Similar():
                return node
            case And(operands) | Or(operands):
                stack.extend(operands)
            case Not(operand) | Count(condition=operand):
                stack.append(operand)
            case _:
                pass
    return None


_WHERE: Final = {
    "or": ("cannot be ORed: it ranks the items the rest of the query selects", "AND it"),
    "not": ("cannot be negated", "AND it"),
    "count": ("cannot be counted", "AND it, outside the count,"),
}


def check_placement(root: Node) -> None:
    """Raise :class:`SimilarityError` for a clause anywhere but under ANDs, or a second one."""
    found: list[Similar] = []
    stack: list[tuple[Node, str | None]] = [(root, None)]
    while stack:
        node, under = stack.pop()
        match node:
            case Similar():
                if under is not None:
                    problem, how = _WHERE[under]
                    raise SimilarityError(
                        f"a similarity clause {problem}",
                        node.span.start,
                        node.span.end,
                        hint=f"{how} with the rest of the query, e.g. `{_EXAMPLE}`",
                    )
                found.append(node)
            case And(operands):
                stack.extend((child, under) for child in operands)
            case Or(operands):
                stack.extend((child, under or "or") for child in operands)
            case Not(operand):
                stack.append((operand, under or "not"))
            case Count(condition=condition):
                stack.append((condition, "count"))
            case _:
                pass
    if len(found) > 1:
        second = sorted(found, key=lambda clause: clause.span.start)[1]
        raise SimilarityError(
            "only one similarity clause per query",
            second.span.start,
            second.span.end,
            hint='say it in one text, e.g. `similar:"rain at night on a highway"`',
        )


def split(root: Node) -> tuple[Similar | None, Node | None]:
    """The similarity clause and the rest of the query (its filter; ``None``: everything).

    The clause is taken out of the AND it stands in, an AND left with one operand becomes that
    operand. ``root`` must have passed :func:`check_placement`.
    """
    if isinstance(root, Similar):
        return root, None
    if not isinstance(root, And):
        return None, root
    clause: Similar | None = None
    rest: list[Node] = []
    for child in root.operands:
        if isinstance(child, Similar):
            clause = child
            continue
        inner_clause, inner_rest = split(child)
        clause = clause or inner_clause
        if inner_rest is not None:
            rest.append(inner_rest)
    if clause is None:
        return None, root
    if not rest:
        return clause, None
    return clause, rest[0] if len(rest) == 1 else And(tuple(rest), root.span)


def exclusions(clause: Similar) -> list[Query]:
    """What the clause itself leaves out: ``similar_to:ID`` never answers ``ID``."""
    if clause.kind is SimilarityKind.ITEM:
        return [{"ids": {"values": [clause.value]}}]
    return []


def candidates_filter(clause: Similar, rest: Query | None) -> Query:
    """The items the clause ranks: the rest of the query, with an embedding, not excluded."""
    body: dict[str, list[Query]] = {"filter": [{"exists": {"field": f.EMBEDDING}}]}
    if rest is not None:
        body["filter"].append(rest)
    if excluded := exclusions(clause):
        body["must_not"] = excluded
    return {"bool": body}


def knn_query(
    clause: Similar, vector: Sequence[float], rest: Query | None, *, k: int | None = None
) -> Query:
    """The ``knn`` query: the ``k`` nearest embeddings among the items ``rest`` selects."""
    k = neighbours(clause) if k is None else k
    knn: Query = {
        "field": f.EMBEDDING,
        "query_vector": [float(x) for x in vector],
        "k": k,
        "num_candidates": num_candidates(k),
    }
    filters = [rest] if rest is not None else []
    if excluded := exclusions(clause):
        filters.append({"bool": {"must_not": excluded}})
    if filters:
        knn["filter"] = filters
    return {"knn": knn}


def ranked_query(
    clause: Similar,
    vector: Sequence[float],
    rest: Query | None,
    *,
    hits_query: Query | None = None,
) -> Query:
    """The query of a similarity search: scored by the kNN, ``hits_query`` (the rest with inner
    hits, to tell which predictions matched) as a non-scoring filter on top."""
    knn = knn_query(clause, vector, rest)
    if hits_query is None:
        return knn
    return {"bool": {"must": [knn], "filter": [hits_query]}}


def cosine_of_score(score: float) -> float:
    """The cosine similarity behind Elasticsearch's ``_score`` for a cosine ``dense_vector``
    (``(1 + cosine) / 2``)."""
    return 2.0 * float(score) - 1.0
