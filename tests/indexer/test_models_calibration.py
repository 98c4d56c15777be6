"""The score calibration: monotone, 0 at chance, bounded by [-1, 1]."""

from __future__ import annotations

import pytest
import torch

from indexer.calibration import calibrate, chance_calibrate, group_scores, independent_scores


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_chance_maps_to_zero_and_extremes_to_bounds(k: int) -> None:
    assert calibrate(1 / k, k) == pytest.approx(0.0, abs=1e-12)
    assert calibrate(1.0, k) == pytest.approx(1.0)
    assert calibrate(0.0, k) == pytest.approx(-1.0)


@pytest.mark.parametrize("k", [2, 3, 4, 7])
def test_calibration_is_strictly_increasing_and_bounded(k: int) -> None:
    p = torch.linspace(0, 1, 1001, dtype=torch.float64)
    scores = chance_calibrate(p, k)
    assert torch.all(scores[1:] > scores[:-1])
    assert scores.min() >= -1
    assert scores.max() <= 1


def test_calibration_matches_the_documented_formula() -> None:
    # K = 4: above chance (p - 1/4) / (3/4), below chance (p - 1/4) / (1/4)
    assert calibrate(0.625, 4) == pytest.approx(0.5)
    assert calibrate(0.125, 4) == pytest.approx(-0.5)
    assert calibrate(0.75, 2) == pytest.approx(0.5)  # K = 2 is 2p - 1


def test_group_scores_follow_the_softmax() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [-50.0, 50.0, 0.0, 0.0]])
    scores = group_scores(logits)
    assert scores.shape == logits.shape
    assert torch.allclose(scores[1], torch.zeros(4))  # uniform = chance everywhere
    assert scores[0, 0] > 0 > scores[0, 1]
    assert scores[2, 1] == pytest.approx(1.0, abs=1e-6)
    assert scores[2, 0] == pytest.approx(-1.0, abs=1e-6)
    assert torch.equal(scores.argmax(1), logits.argmax(1))


def test_independent_scores_compare_against_neutral() -> None:
    tag = torch.tensor([[1.0, 0.0, -3.0]])
    neutral = torch.tensor([[0.0]])
    scores = independent_scores(tag, neutral)
    assert scores[0, 1] == pytest.approx(0.0)
    assert scores[0, 0] == pytest.approx(2 * torch.sigmoid(torch.tensor(1.0)).item() - 1)
    assert scores[0, 2] < 0


def test_fewer_than_two_alternatives_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least two"):
        calibrate(0.5, 1)
