"""Turn zero-shot similarities into calibrated scores in [-1, 1] where 0 means chance.

Within a group of K mutually exclusive tags, ``p = softmax(logits)`` over the group and

    score = (p - 1/K) / (1 - 1/K)   if p >= 1/K   (chance -> 0, certain -> 1)
    score = (p - 1/K) / (1/K)       if p <  1/K   (chance -> 0, impossible -> -1)

An independent tag is a two-way choice between its prompts and the taxonomy's neutral prompts:
``p = softmax([tag_logit, neutral_logit])[0]`` and the same formula with K = 2, i.e.
``score = 2p - 1``. Both maps are continuous, piecewise linear and strictly increasing in ``p``,
so ranking by score is ranking by probability.
"""

from __future__ import annotations

import torch


def chance_calibrate(p: torch.Tensor, k: int) -> torch.Tensor:
    """Map probabilities (chance level ``1/k``) onto [-1, 1] with chance at 0."""
    if k < 2:
        raise ValueError(f"calibration needs at least two alternatives, got k={k}")
    chance = 1.0 / k
    above = (p - chance) / (1.0 - chance)
    below = (p - chance) / chance
    return torch.where(p >= chance, above, below).clamp(-1.0, 1.0)


def group_scores(logits: torch.Tensor) -> torch.Tensor:
    """Scores of a group's tags from their logits, shape ``(..., K)`` -> ``(..., K)``."""
    return chance_calibrate(torch.softmax(logits.float(), dim=-1), logits.shape[-1])


def independent_scores(tag_logits: torch.Tensor, neutral_logits: torch.Tensor) -> torch.Tensor:
    """Scores of independent tags, ``(..., T)`` tag logits against ``(..., 1)`` neutral logits."""
    p = torch.sigmoid(tag_logits.float() - neutral_logits.float())  # softmax over two
    return chance_calibrate(p, 2)


def calibrate(p: float, k: int) -> float:
    """Scalar :func:`chance_calibrate`, for documentation and importers of probabilities."""
    return float(chance_calibrate(torch.tensor([p], dtype=torch.float64), k)[0])
