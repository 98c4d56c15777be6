"""Synthetic image embeddings for tests and benchmarks, and exact nearest neighbours.

Real CLIP image embeddings are not spread evenly over the sphere: they share a common
direction and gather in clusters (scenes that look alike). Uniform random unit vectors in 512
dimensions are the opposite, every pair nearly orthogonal, which is both unrealistic and the
worst case for approximate search. :class:`ClusteredVectors` draws unit vectors around a
shared mean direction and a few hundred cluster centres; a vector depends only on
``(seed, index)``, so a benchmark can regenerate its data instead of keeping it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ClusteredVectors:
    """Unit vectors ``normalise(shared * mean + centre_c + noise)``.

    The defaults give a mean pairwise cosine of about 0.4 and a nearest-neighbour cosine of
    about 0.8, in the range CLIP ViT-B-32 image embeddings of one domain
    show (see ``bench/vectors.py``, which prints both for the data it measured).
    """

    dims: int = 512
    clusters: int = 256
    seed: int = 0
    shared: float = 1.0
    spread: float = 0.7
    _mean: Matrix = field(init=False, repr=False, compare=False)
    _centres: Matrix = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 0])
        mean = _unit(rng.standard_normal((1, self.dims)).astype(np.float32))
        centres = _unit(rng.standard_normal((self.clusters, self.dims)).astype(np.float32))
        object.__setattr__(self, "_mean", mean)
        object.__setattr__(self, "_centres", centres)

    def block(self, start: int, count: int, *, stream: int = 1) -> Matrix:
        """Vectors ``start .. start + count`` of ``stream`` (stream 1: the data, 2: queries)."""
        out = np.empty((count, self.dims), dtype=np.float32)
        for offset in range(count):
            out[offset] = self._one(stream, start + offset)
        return out

    def cluster_of(self, index: int, *, stream: int = 1) -> int:
        """The cluster vector ``index`` of ``stream`` was drawn around."""
        rng = np.random.default_rng([self.seed, stream, index])
        return int(rng.integers(self.clusters))

    def _one(self, stream: int, index: int) -> Matrix:
        rng = np.random.default_rng([self.seed, stream, index])
        centre = self._centres[int(rng.integers(self.clusters))]
        noise = rng.standard_normal(self.dims).astype(np.float32) * (
            self.spread / np.sqrt(self.dims)
        )
        vector: Matrix = self.shared * self._mean[0] + centre + noise
        return (vector / np.linalg.norm(vector)).astype(np.float32)


def _unit(matrix: Matrix) -> Matrix:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.where(norms == 0, 1, norms)).astype(np.float32)


def unit(matrix: npt.ArrayLike) -> Matrix:
    """Rows scaled to length 1 (zero rows stay zero)."""
    return _unit(np.asarray(matrix, dtype=np.float32).reshape(-1, np.shape(matrix)[-1]))


def exact_top_k(
    data: Matrix, queries: Matrix, k: int, *, allowed: npt.NDArray[np.bool_] | None = None
) -> list[list[int]]:
    """Row numbers of the ``k`` rows of ``data`` most cosine-similar to each query, best first.

    ``data`` and ``queries`` are unit rows. ``allowed`` (one flag per data row) restricts the
    candidates, as a filter does. Ties are broken by the lower row number.
    """
    result: list[list[int]] = []
    for query in queries:
        scores = data @ query
        if allowed is not None:
            scores = np.where(allowed, scores, -np.inf)
        candidates = int(np.isfinite(scores).sum()) if allowed is not None else len(scores)
        take = min(k, candidates)
        if take == 0:
            result.append([])
            continue
        part = np.argpartition(-scores, take - 1)[:take]
        order = sorted(part.tolist(), key=lambda row: (-float(scores[row]), row))
        result.append(order)
    return result


def recall(found: list[list[int]], exact: list[list[int]]) -> float:
    """Mean over queries of |found ∩ exact| / |exact| (1.0 for queries with nothing to find)."""
    shares = [
        len(set(got) & set(want)) / len(want) if want else 1.0
        for got, want in zip(found, exact, strict=True)
    ]
    return float(np.mean(shares)) if shares else 1.0
