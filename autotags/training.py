"""Examples and the linear model of an autotag: stored embeddings in, weights and bias out.

Positives and negatives are items, given by id or by a query of the language; their stored
image embeddings are the features. Without negatives, random items with an embedding (not
among the positives) stand in, as in Nucleus. A logistic regression (scikit-learn) with balanced
class weights is fitted; an item's score is ``tanh(d / 2)`` of its decision value ``d``, that is
``2 p - 1`` of the fitted probability: in [-1, 1], 0 on the decision boundary, the same scale
every other prediction uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from elasticsearch import Elasticsearch

from autotags.registry import AutotagError
from search import QueryError, parse, translate
from store import schema as f

MAX_EXAMPLES: Final = 5_000
RANDOM_NEGATIVES_PER_POSITIVE: Final = 20
MIN_RANDOM_NEGATIVES: Final = 200
MAX_RANDOM_NEGATIVES: Final = 2_000
REGULARISATION_C: Final = 1.0

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Examples:
    """Items given by ids and/or a query (either may be empty)."""

    item_ids: tuple[str, ...] = ()
    query: str | None = None

    @property
    def empty(self) -> bool:
        return not self.item_ids and not self.query


def _vectors(client: Elasticsearch, index: str, query: Mapping[str, Any]) -> dict[str, Matrix]:
    response = client.search(
        index=index,
        query={"bool": {"filter": [query, {"exists": {"field": f.EMBEDDING}}]}},
        size=MAX_EXAMPLES,
        source={"includes": [f.EMBEDDING], "exclude_vectors": False},
    )
    return {
        str(hit["_id"]): np.asarray(hit["_source"][f.EMBEDDING], dtype=np.float32)
        for hit in response["hits"]["hits"]
    }


def example_vectors(
    client: Elasticsearch, index: str, examples: Examples, what: str
) -> dict[str, Matrix]:
    """Item id -> stored embedding of the examples; every id must exist and have one."""
    found: dict[str, Matrix] = {}
    if examples.item_ids:
        ids = list(dict.fromkeys(examples.item_ids))
        found.update(_vectors(client, index, {"ids": {"values": ids}}))
        missing = [i for i in ids if i not in found]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise AutotagError(
                f"{what}: {len(missing)} item(s) not found or without an embedding: {shown}"
            )
    if examples.query:
        try:
            query = translate(parse(examples.query))
        except QueryError as error:
            error.query = error.query or examples.query
            raise AutotagError(f"{what} query: {error.render()}") from None
        found.update(_vectors(client, index, query))
    return found


def random_negatives(
    client: Elasticsearch, index: str, avoid: Sequence[str], count: int, seed: int
) -> dict[str, Matrix]:
    """``count`` random items with an embedding, none of ``avoid``."""
    query = {
        "function_score": {
            "query": {
                "bool": {
                    "filter": [{"exists": {"field": f.EMBEDDING}}],
                    "must_not": [{"ids": {"values": list(avoid)}}],
                }
            },
            "random_score": {"seed": seed, "field": "_seq_no"},
            "boost_mode": "replace",
        }
    }
    response = client.search(
        index=index,
        query=query,
        size=count,
        source={"includes": [f.EMBEDDING], "exclude_vectors": False},
    )
    return {
        str(hit["_id"]): np.asarray(hit["_source"][f.EMBEDDING], dtype=np.float32)
        for hit in response["hits"]["hits"]
    }


def random_negative_count(positives: int) -> int:
    wanted = RANDOM_NEGATIVES_PER_POSITIVE * positives
    return min(MAX_RANDOM_NEGATIVES, max(MIN_RANDOM_NEGATIVES, wanted))


@dataclass(frozen=True)
class LinearModel:
    weights: Matrix
    bias: float

    def scores(self, vectors: Matrix) -> Matrix:
        """Scores in [-1, 1], 0 on the boundary: ``tanh(d / 2) = 2 sigmoid(d) - 1``."""
        decision = vectors @ self.weights + np.float32(self.bias)
        return np.tanh(decision / 2).astype(np.float32)


def fit(positives: Matrix, negatives: Matrix) -> tuple[LinearModel, dict[str, Any]]:
    """A logistic regression separating the two sets; and a summary of the fit."""
    from sklearn.linear_model import LogisticRegression

    if len(positives) == 0 or len(negatives) == 0:
        raise AutotagError("an autotag needs at least one positive and one negative example")
    features = np.concatenate([positives, negatives]).astype(np.float64)
    labels = np.concatenate([np.ones(len(positives)), np.zeros(len(negatives))])
    model = LogisticRegression(class_weight="balanced", C=REGULARISATION_C, max_iter=2000)
    model.fit(features, labels)
    linear = LinearModel(model.coef_[0].astype(np.float32), float(model.intercept_[0]))
    predicted = linear.scores(features.astype(np.float32)) >= 0
    summary = {
        "model": "logistic regression (scikit-learn), balanced class weights",
        "C": REGULARISATION_C,
        "positives": len(positives),
        "negatives": len(negatives),
        "training_accuracy": float(np.mean(predicted == labels.astype(bool))),
    }
    return linear, summary
