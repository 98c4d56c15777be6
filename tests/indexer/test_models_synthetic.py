"""The synthetic world: determinism, ground truth shape, dataset files, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from indexer.synthetic import generate, read_ground_truth, render_scene, write_dataset
from indexer.synthetic.metrics import average_precision, mean_average_precision, precision_recall
from indexer.taxonomy import load_taxonomy


def test_scenes_are_deterministic_by_seed_and_index() -> None:
    first = list(generate(4, seed=5))
    again = list(generate(4, seed=5))
    assert [im.tobytes() for im, _ in first] == [im.tobytes() for im, _ in again]
    assert [gt for _, gt in first] == [gt for _, gt in again]
    shifted = list(generate(2, seed=5, start=2))
    assert [im.tobytes() for im, _ in shifted] == [im.tobytes() for im, _ in first[2:]]
    other = render_scene(6, 0)[0]
    assert other.tobytes() != first[0][0].tobytes()


def test_ground_truth_has_one_tag_per_group_and_boxes_inside() -> None:
    taxonomy = load_taxonomy()
    for image, truth in generate(40, seed=9):
        for group in taxonomy.groups:
            assert len(truth.tags & set(group.labels)) == 1
        assert truth.tags <= set(taxonomy.image_labels)
        for label, (x1, y1, x2, y2) in truth.objects:
            assert label in taxonomy.object_labels
            assert 0 <= x1 < x2 <= image.width
            assert 0 <= y1 < y2 <= image.height


def test_write_dataset_round_trips(tmp_path: Path) -> None:
    truth_path = write_dataset(tmp_path, 3, seed=2)
    truths = read_ground_truth(truth_path)
    manifest = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [m["item_id"] for m in manifest] == list(truths)
    assert all(Path(m["uri"]).is_file() and m["dataset"] == "synthetic" for m in manifest)
    expected = [gt for _, gt in generate(3, seed=2)]
    assert list(truths.values()) == expected


def test_precision_recall() -> None:
    figures = precision_recall([True, True, False, False], [True, False, True, False])
    assert (figures.precision, figures.recall) == (0.5, 0.5)
    assert precision_recall([False], [False]).precision == 1.0


def test_average_precision() -> None:
    box = (0.0, 0.0, 10.0, 10.0)
    truths = [[("car", box)], [("car", box)]]
    perfect = [[("car", 0.9, box)], [("car", 0.8, box)]]
    assert average_precision(perfect, truths, "car") == 1.0
    # a confident false positive ranked first, then both hits: precision 1/2 and 2/3
    with_miss = [[("car", 0.95, (50.0, 50, 60, 60)), ("car", 0.9, box)], [("car", 0.8, box)]]
    assert average_precision(with_miss, truths, "car") == pytest.approx(2 / 3)
    half = [[("car", 0.9, box), ("car", 0.85, box)], []]  # duplicate counts as a false positive
    assert average_precision(half, truths, "car") == pytest.approx(0.5)
    m_ap, per_label = mean_average_precision(perfect, truths, ["car", "pedestrian"])
    assert m_ap == 1.0
    assert per_label["pedestrian"] != per_label["pedestrian"]
