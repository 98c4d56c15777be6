"""Per-label accumulators of matched detections, and the figures read from them.

A :class:`LabelCurve` collects, item after item, the kept detections of one training set and
one label (score, right or wrong per IoU threshold, ignored) and how many ground-truth objects
count. Everything reported is read from the cumulative counts at "cut points" in descending
score order (:class:`Cumulative`): COCO's 101-point interpolated AP, the precision-recall
curve, TP/FP/FN at a score threshold and observed precision per score range.

Memory stays bounded however many items stream past: detections are kept exactly (one cut
point each, COCO's own computation) up to ``budget``; past it they are folded into a score
histogram of ``bins`` bins on [-1, 1] (one cut point per bin; ties within a bin of width
2/bins). For the bootstrap, items are dealt round-robin into ``blocks`` groups; resampling
groups with replacement resamples items (groups of independent items are independent), and
a coarse per-group histogram keeps that bounded too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
from numpy.typing import NDArray

from evaluation.matching import IOU_THRESHOLDS, RECALL_THRESHOLDS, Matched

N_THRESHOLDS: Final = len(IOU_THRESHOLDS)
DEFAULT_BUDGET: Final = 200_000
DEFAULT_BINS: Final = 10_000
BLOCK_BINS: Final = 200
# Curves with at most this many detections are bootstrapped exactly.
EXACT_BOOTSTRAP: Final = 5000
SCORE_LOW: Final = -1.0
SCORE_HIGH: Final = 1.0
_EPS: Final = float(np.spacing(1))

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


def bin_of(scores: FloatArray, bins: int) -> IntArray:
    """Histogram bin of each score: ``floor((s + 1) * bins / 2)``, clipped to the range."""
    index = np.floor((scores - SCORE_LOW) * (bins / (SCORE_HIGH - SCORE_LOW))).astype(np.int64)
    return np.clip(index, 0, bins - 1)


def bin_edges(bins: int) -> FloatArray:
    """Lower edge of every bin (``-1 + 2 b / bins``, exact on round numbers like 0.5)."""
    return SCORE_LOW + (SCORE_HIGH - SCORE_LOW) * np.arange(bins, dtype=np.float64) / bins


@dataclass(frozen=True)
class Cumulative:
    """Counts at the cut points, best score first: the data every figure is read from.

    ``scores[i]`` is the lowest score included at cut ``i`` (a detection's score, or a bin's
    lower edge); ``tp[t, i]``/``fp[t, i]`` count (possibly weighted) detections up to cut ``i``
    at IoU threshold ``t``; ``truth`` is the number of ground-truth objects that count.
    """

    scores: FloatArray
    tp: FloatArray
    fp: FloatArray
    truth: float
    _ap: list[FloatArray | None] = field(default_factory=list, compare=False, repr=False)

    def interpolated(self) -> tuple[FloatArray, FloatArray]:
        """COCO's precision at the 101 recall levels per threshold ``(T, 101)``, with the score
        reached there (COCO's ``accumulate``: precision envelope, then a left search)."""
        n_t = self.tp.shape[0]
        precision = np.zeros((n_t, len(RECALL_THRESHOLDS)))
        at_score = np.full((n_t, len(RECALL_THRESHOLDS)), np.nan)
        if self.truth <= 0:
            return precision, at_score
        for t in range(n_t):
            tp, fp = self.tp[t], self.fp[t]
            if not len(tp):
                continue
            recall = tp / self.truth
            envelope = np.maximum.accumulate((tp / (fp + tp + _EPS))[::-1])[::-1]
            where = np.searchsorted(recall, RECALL_THRESHOLDS, side="left")
            reached = where < len(tp)
            precision[t, reached] = envelope[where[reached]]
            at_score[t, reached] = self.scores[where[reached]]
        return precision, at_score

    def average_precision(self) -> FloatArray | None:
        """AP per IoU threshold (mean of the 101 interpolated precisions); None: no truth."""
        if not self._ap:
            if self.truth <= 0:
                self._ap.append(None)
            else:
                precision, _ = self.interpolated()
                self._ap.append(precision.mean(axis=1))
        return self._ap[0]

    def final_recall(self) -> FloatArray | None:
        if self.truth <= 0:
            return None
        if not self.tp.shape[1]:
            return np.zeros(self.tp.shape[0])
        result: FloatArray = self.tp[:, -1] / self.truth
        return result

    def upto(self, score: float) -> int:
        """How many cut points have a score of at least ``score``."""
        # scores descend; count those >= score
        return int(np.searchsorted(-self.scores, -score, side="right"))

    def counts_at(self, score: float, t: int) -> tuple[float, float]:
        """(TP, FP) among detections scoring at least ``score``, at IoU threshold ``t``."""
        cut = self.upto(score)
        if cut == 0:
            return 0.0, 0.0
        return float(self.tp[t, cut - 1]), float(self.fp[t, cut - 1])

    def between(self, low: float, high: float | None, t: int) -> tuple[float, float]:
        """(TP, FP) among detections scoring in ``[low, high)`` (no upper bound when None)."""
        tp_low, fp_low = self.counts_at(low, t)
        if high is None:
            return tp_low, fp_low
        tp_high, fp_high = self.counts_at(high, t)
        return tp_low - tp_high, fp_low - fp_high


class LabelCurve:
    """The accumulator of one (training set, label); see the module docstring."""

    def __init__(
        self,
        *,
        budget: int = DEFAULT_BUDGET,
        bins: int = DEFAULT_BINS,
        blocks: int = 0,
        block_bins: int = BLOCK_BINS,
    ) -> None:
        self.budget = budget
        self.bins = bins
        self.blocks = blocks
        self.block_bins = block_bins
        self.truth = 0
        self.detections = 0
        self.images = 0
        self.truth_per_block = np.zeros(max(blocks, 1), dtype=np.int64)
        # exact mode: growing lists, flushed into arrays
        self._pending: list[Matched] = []
        self._block: list[int] = []
        self._chunks: list[tuple[FloatArray, IntArray, IntArray, IntArray]] = []
        self._is_sorted = False
        self._exact = True
        # histogram mode: counts of right / wrong (not ignored) detections per bin
        self._tp_hist: IntArray | None = None
        self._fp_hist: IntArray | None = None
        # per block, coarse (only with blocks)
        self._tp_blocks: NDArray[np.int32] | None = None
        self._fp_blocks: NDArray[np.int32] | None = None
        if blocks:
            shape = (blocks, N_THRESHOLDS, block_bins)
            self._tp_blocks = np.zeros(shape, dtype=np.int32)
            self._fp_blocks = np.zeros(shape, dtype=np.int32)

    @property
    def exact(self) -> bool:
        """Whether every detection is still kept on its own (COCO's computation exactly)."""
        self._flush()
        return self._exact

    def add(self, matched: Sequence[Matched], truth: int, block: int = 0) -> None:
        """One image's kept detections of this label and its countable ground truth."""
        self.images += 1
        self.truth += truth
        if self.blocks:
            self.truth_per_block[block] += truth
        if not matched:
            return
        self.detections += len(matched)
        self._pending.extend(matched)
        self._block.extend([block] * len(matched))
        if len(self._pending) >= min(8192, self.budget + 1):
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        rows = np.asarray(self._pending, dtype=np.float64).reshape(-1, 3)
        chunk = (
            # scores as the index stores and compares them: 32-bit floats
            rows[:, 0].astype(np.float32).astype(np.float64),
            rows[:, 1].astype(np.int64),
            rows[:, 2].astype(np.int64),
            np.asarray(self._block, dtype=np.int64),
        )
        self._pending, self._block = [], []
        if self.blocks:
            self._fold_blocks(*chunk)
        if self._exact:
            self._chunks.append(chunk)
            self._is_sorted = False
            if sum(len(c[0]) for c in self._chunks) > self.budget:
                self._exact = False
                for old in self._chunks:
                    self._fold(old[0], old[1], old[2])
                self._chunks = []
        else:
            self._fold(chunk[0], chunk[1], chunk[2])

    def _fold(self, scores: FloatArray, tp: IntArray, ignored: IntArray) -> None:
        if self._tp_hist is None or self._fp_hist is None:
            self._tp_hist = np.zeros((N_THRESHOLDS, self.bins), dtype=np.int64)
            self._fp_hist = np.zeros((N_THRESHOLDS, self.bins), dtype=np.int64)
        where = bin_of(scores, self.bins)
        for t in range(N_THRESHOLDS):
            right = (tp >> t) & 1
            wrong = (1 - right) * (1 - ((ignored >> t) & 1))
            self._tp_hist[t] += np.bincount(where, weights=right, minlength=self.bins).astype(
                np.int64
            )
            self._fp_hist[t] += np.bincount(where, weights=wrong, minlength=self.bins).astype(
                np.int64
            )

    def _fold_blocks(
        self, scores: FloatArray, tp: IntArray, ignored: IntArray, block: IntArray
    ) -> None:
        assert self._tp_blocks is not None
        assert self._fp_blocks is not None
        where = block * self.block_bins + bin_of(scores, self.block_bins)
        size = self.blocks * self.block_bins
        for t in range(N_THRESHOLDS):
            right = (tp >> t) & 1
            wrong = (1 - right) * (1 - ((ignored >> t) & 1))
            self._tp_blocks[:, t, :] += (
                np.bincount(where, weights=right, minlength=size)
                .astype(np.int32)
                .reshape(self.blocks, self.block_bins)
            )
            self._fp_blocks[:, t, :] += (
                np.bincount(where, weights=wrong, minlength=size)
                .astype(np.int32)
                .reshape(self.blocks, self.block_bins)
            )

    def merge(self, other: LabelCurve) -> None:
        """Add ``other`` (same settings), e.g. the result of another stream slice."""
        other._flush()
        self._flush()
        self.images += other.images
        self.truth += other.truth
        self.detections += other.detections
        if self.blocks == other.blocks:
            self.truth_per_block += other.truth_per_block
        if self.blocks:
            if other.blocks != self.blocks:
                raise ValueError("cannot merge curves with different blocks into blocks")
            assert self._tp_blocks is not None
            assert other._tp_blocks is not None
            assert self._fp_blocks is not None
            assert other._fp_blocks is not None
            self._tp_blocks += other._tp_blocks
            self._fp_blocks += other._fp_blocks
        if other._exact:
            for scores, tp, ignored, block in other._chunks:
                if self._exact:
                    self._chunks.append((scores, tp, ignored, block))
                    self._is_sorted = False
                else:
                    self._fold(scores, tp, ignored)
            if self._exact and sum(len(c[0]) for c in self._chunks) > self.budget:
                self._exact = False
                for old in self._chunks:
                    self._fold(old[0], old[1], old[2])
                self._chunks = []
            return
        if self._exact:
            self._exact = False
            for old in self._chunks:
                self._fold(old[0], old[1], old[2])
            self._chunks = []
        assert other._tp_hist is not None
        assert other._fp_hist is not None
        if self._tp_hist is None or self._fp_hist is None:
            self._tp_hist = other._tp_hist.copy()
            self._fp_hist = other._fp_hist.copy()
        else:
            self._tp_hist += other._tp_hist
            self._fp_hist += other._fp_hist

    def cumulative(self) -> Cumulative:
        """The counts at the cut points (exact while under budget, else per bin)."""
        self._flush()
        if self._exact:
            return self._exact_cumulative(None)
        assert self._tp_hist is not None
        assert self._fp_hist is not None
        return _from_histogram(self._tp_hist, self._fp_hist, self.bins, float(self.truth))

    def _sorted(self) -> tuple[FloatArray, IntArray, IntArray, IntArray]:
        """The kept detections, best score first (stable: COCO's mergesort), cached."""
        if len(self._chunks) != 1 or not self._is_sorted:
            if self._chunks:
                scores = np.concatenate([c[0] for c in self._chunks])
                tp = np.concatenate([c[1] for c in self._chunks])
                ignored = np.concatenate([c[2] for c in self._chunks])
                block = np.concatenate([c[3] for c in self._chunks])
            else:
                scores = np.zeros(0)
                tp = ignored = block = np.zeros(0, dtype=np.int64)
            order = np.argsort(-scores, kind="mergesort")
            self._chunks = [(scores[order], tp[order], ignored[order], block[order])]
            self._is_sorted = True
        return self._chunks[0]

    def _exact_cumulative(self, weights: FloatArray | None) -> Cumulative:
        scores, tp, ignored, block = self._sorted()
        weight = np.ones(len(scores)) if weights is None else weights[block]
        right = np.empty((N_THRESHOLDS, len(scores)))
        wrong = np.empty((N_THRESHOLDS, len(scores)))
        for t in range(N_THRESHOLDS):
            r = (tp >> t) & 1
            i = (ignored >> t) & 1
            right[t] = np.cumsum(r * weight)
            wrong[t] = np.cumsum((1 - r) * (1 - i) * weight)
        truth = float(self.truth if weights is None else weights @ self.truth_per_block)
        return Cumulative(scores, right, wrong, truth)

    def replicates(self, weights: FloatArray, chunk: int = 50) -> Iterator[Replicates]:
        """The cumulative counts of the replicates (rows of ``weights``, replicates x blocks),
        a chunk of replicates at a time.

        Small curves resample their exact detections; larger ones (more than
        ``EXACT_BOOTSTRAP``) the coarse per-block histograms, which costs the same at any size.
        """
        self._flush()
        if not self.blocks:
            raise ValueError("this curve keeps no blocks")
        truths = weights @ self.truth_per_block
        if self._exact and self.detections <= EXACT_BOOTSTRAP:
            scores, tp, ignored, block = self._sorted()
            right = np.stack([(tp >> t) & 1 for t in range(N_THRESHOLDS)]).astype(np.float64)
            wrong = np.stack(
                [(1 - ((tp >> t) & 1)) * (1 - ((ignored >> t) & 1)) for t in range(N_THRESHOLDS)]
            ).astype(np.float64)
            for start in range(0, len(weights), chunk):
                w = weights[start : start + chunk][:, block]  # (C, n)
                yield Replicates(
                    scores,
                    np.cumsum(right[None] * w[:, None, :], axis=-1),
                    np.cumsum(wrong[None] * w[:, None, :], axis=-1),
                    truths[start : start + chunk],
                )
            return
        assert self._tp_blocks is not None
        assert self._fp_blocks is not None
        totals = self._tp_blocks.sum(axis=(0, 1)) + self._fp_blocks.sum(axis=(0, 1))
        used = np.flatnonzero(totals > 0)[::-1]
        scores = bin_edges(self.block_bins)[used]
        n = len(used)
        # (blocks, T * n) as floats once; each chunk is then one matrix product, by einsum
        # rather than BLAS: a multi-threaded BLAS on a busy small machine is 4x slower here
        tp_blocks = self._tp_blocks[:, :, used].reshape(self.blocks, -1).astype(np.float64)
        fp_blocks = self._fp_blocks[:, :, used].reshape(self.blocks, -1).astype(np.float64)
        for start in range(0, len(weights), chunk):
            rows = weights[start : start + chunk]
            shape = (len(rows), N_THRESHOLDS, n)
            yield Replicates(
                scores,
                np.cumsum(np.einsum("ck,kn->cn", rows, tp_blocks).reshape(shape), axis=-1),
                np.cumsum(np.einsum("ck,kn->cn", rows, fp_blocks).reshape(shape), axis=-1),
                truths[start : start + chunk],
            )

    def replicate_base(self) -> Replicates:
        """What :meth:`replicates` gives for weight 1 everywhere (the coarse point estimate
        in histogram mode, the exact one otherwise)."""
        return next(self.replicates(np.ones((1, self.blocks))))


@dataclass(frozen=True)
class Replicates:
    """Cumulative counts of C bootstrap replicates at shared cut points: ``tp``/``fp`` are
    ``(C, T, n)``, ``truth`` ``(C,)``. Figures come out as arrays, NaN where undefined."""

    scores: FloatArray
    tp: FloatArray
    fp: FloatArray
    truth: FloatArray
    _ap: list[FloatArray] = field(default_factory=list, compare=False, repr=False)

    def average_precision(self) -> FloatArray:
        """``(C, T)``: COCO's 101-point AP of every replicate and threshold, vectorised."""
        if not self._ap:
            self._ap.append(self._average_precision())
        return self._ap[0]

    def _average_precision(self) -> FloatArray:
        c, n_t, n = self.tp.shape
        out = np.full((c, n_t), np.nan)
        has_truth = self.truth > 0
        if n == 0:
            out[has_truth] = 0.0
            return out
        rows = c * n_t
        truth = np.where(has_truth, self.truth, 1.0)[:, None, None]
        recall = (self.tp / truth).reshape(rows, n)
        precision = self.tp / (self.tp + self.fp + _EPS)
        envelope = np.flip(np.maximum.accumulate(np.flip(precision, -1), axis=-1), -1)
        # One search for every row: shift row k by 2k so the rows sort one after another.
        offset = 2.0 * np.arange(rows)[:, None]
        found = (
            np.searchsorted(
                (recall + offset).ravel(),
                (RECALL_THRESHOLDS[None, :] + offset).ravel(),
                side="left",
            ).reshape(rows, -1)
            - (np.arange(rows) * n)[:, None]
        )
        reached = found < n
        picked = envelope.reshape(rows, n)[np.arange(rows)[:, None], np.minimum(found, n - 1)]
        ap = np.where(reached, picked, 0.0).mean(axis=-1).reshape(c, n_t)
        out[has_truth] = ap[has_truth]
        return out

    def counts_at(self, score: float, t: int) -> tuple[FloatArray, FloatArray]:
        """``(C,)`` TP and FP among detections scoring at least ``score``."""
        cut = int(np.searchsorted(-self.scores, -score, side="right"))
        if cut == 0:
            zeros = np.zeros(self.tp.shape[0])
            return zeros, zeros
        return self.tp[:, t, cut - 1], self.fp[:, t, cut - 1]


def _from_histogram(
    tp: NDArray[np.generic], fp: NDArray[np.generic], bins: int, truth: float
) -> Cumulative:
    used = np.flatnonzero((tp.sum(axis=0) + fp.sum(axis=0)) > 0)[::-1]  # best bin first
    edges = bin_edges(bins)
    return Cumulative(
        edges[used],
        np.cumsum(tp[:, used].astype(np.float64), axis=1),
        np.cumsum(fp[:, used].astype(np.float64), axis=1),
        truth,
    )
