"""The index pipeline: every item tagged, skipped or failed; bad images never stop a run."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from elasticsearch import Elasticsearch
from PIL import Image

from cli.indexing import main
from indexer.decoding import load_image, open_image, reduced_size
from indexer.pipeline import IndexOptions, resolve_device, run_index
from indexer.report import FailureLog, load_failures
from indexer.sources import open_source
from store.writer import PredictionWriter
from tests.indexer.stubs import (
    COLOURS,
    MemoryWriter,
    StubClip,
    StubDetection,
    StubDetector,
    expected_clip,
    write_bad_files,
    write_images,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

QUIET = IndexOptions(batch_size=4, workers=0, progress=False)


def test_tags_every_item_with_both_models(tmp_path: Path) -> None:
    write_images(tmp_path / "ds", 7)
    writer = MemoryWriter()

    summary = run_index(
        open_source(tmp_path / "ds"),
        writer,
        clip=StubClip(),
        detector=StubDetector(),
        options=QUIET,
    )

    assert (summary.seen, summary.tagged, summary.skipped, summary.failed) == (7, 7, 0, 0)
    assert summary.predictions == 7 * 3
    entry = writer.items["ds/img001.png"]
    assert entry.item["width"] == 16
    assert entry.item["height"] == 12
    assert entry.item["dataset"] == "ds"
    scores = {p["label"]: p["score"] for p in entry.image_predictions}
    assert scores == pytest.approx(expected_clip(COLOURS[1]), abs=1e-6)
    assert {p["model"] for p in entry.image_predictions} == {"stub-clip"}
    (car,) = entry.object_predictions
    assert car["bbox"] == {"x1": 0.0, "y1": 0.0, "x2": 16.0, "y2": 12.0}
    # The stub detector answers p = 250/255; the index stores it signed, 2p - 1.
    assert car["score"] == pytest.approx(2 * 250 / 255 - 1)


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_images_are_failures_of_their_own(tmp_path: Path, workers: int) -> None:
    write_images(tmp_path / "ds", 5)
    bad = write_bad_files(tmp_path / "ds" / "bad")
    writer = MemoryWriter()
    failures_file = tmp_path / "out" / "failures.jsonl"

    with FailureLog(failures_file, training_set="ts1") as log:
        summary = run_index(
            open_source(tmp_path / "ds"),
            writer,
            clip=StubClip(),
            detector=StubDetector(),
            options=IndexOptions(batch_size=3, workers=workers, progress=False, max_pixels=10**6),
            failure_log=log,
        )

    assert (summary.seen, summary.tagged, summary.failed) == (8, 5, 3)
    assert len(writer.items) == 5
    failed = {f.item_id: f for f in summary.failures}
    assert set(failed) == {f"ds/bad/{name}" for name in bad}
    assert "image too large: 3000x3000" in failed["ds/bad/huge.png"].reason
    assert "truncated" in failed["ds/bad/truncated.png"].reason
    assert "UnidentifiedImageError" in failed["ds/bad/text.png"].reason
    records = load_failures(failures_file)
    assert {r["item_id"] for r in records} == set(failed)
    assert {r["stage"] for r in records} == {"decode"}
    assert {r["training_set"] for r in records} == {"ts1"}


def test_source_problems_are_counted_and_logged(tmp_path: Path) -> None:
    write_images(tmp_path, 2)
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"item_id": "a", "uri": "sub/img000.png"},
        {"item_id": "a", "uri": "img001.png"},
        {"item_id": "b", "uri": "missing.png"},
        {"item_id": "c", "uri": "img001.png"},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    writer = MemoryWriter()
    failures_file = tmp_path / "failures.jsonl"

    with FailureLog(failures_file, training_set="ts1") as log:
        summary = run_index(
            open_source(manifest),
            writer,
            clip=StubClip(),
            detector=None,
            options=QUIET,
            failure_log=log,
        )

    assert (summary.seen, summary.tagged, summary.failed) == (4, 2, 2)
    assert set(writer.items) == {"a", "c"}
    assert {(r["item_id"], r["stage"]) for r in load_failures(failures_file)} == {
        ("a", "source"),
        ("b", "source"),
    }


def test_a_model_failure_costs_only_the_item_that_caused_it(tmp_path: Path) -> None:
    write_images(tmp_path / "ds", 6)  # img000 is red
    writer = MemoryWriter()
    clip = StubClip(fail_on_red=True)

    summary = run_index(
        open_source(tmp_path / "ds"), writer, clip=clip, detector=None, options=QUIET
    )

    assert (summary.tagged, summary.failed) == (5, 1)
    (failure,) = summary.failures
    assert (failure.item_id, failure.stage) == ("ds/sub/img000.png", "predict")
    assert "red is bad" in failure.reason


def test_already_tagged_items_are_skipped_unless_forced(tmp_path: Path) -> None:
    write_images(tmp_path / "ds", 5)
    writer = MemoryWriter()
    source = open_source(tmp_path / "ds")
    run_index(source, writer, clip=StubClip(), detector=None, options=QUIET)

    clip = StubClip()
    again = run_index(source, writer, clip=clip, detector=None, options=QUIET)
    assert (again.seen, again.tagged, again.skipped) == (5, 0, 5)
    assert clip.batches == []  # nothing decoded or run

    write_images(tmp_path / "ds" / "new", 2)
    incremental = run_index(
        open_source(tmp_path / "ds"), writer, clip=StubClip(), detector=None, options=QUIET
    )
    assert (incremental.tagged, incremental.skipped) == (2, 5)

    writer.force = True
    forced = run_index(
        open_source(tmp_path / "ds"), writer, clip=StubClip(), detector=None, options=QUIET
    )
    assert (forced.tagged, forced.skipped) == (7, 0)


def test_write_failures_are_reported_and_the_rest_written(tmp_path: Path) -> None:
    write_images(tmp_path / "ds", 4)
    writer = MemoryWriter(fail_ids=["ds/img001.png"])
    summary = run_index(
        open_source(tmp_path / "ds"), writer, clip=StubClip(), detector=None, options=QUIET
    )
    assert (summary.tagged, summary.failed) == (3, 1)
    assert summary.failures[0].stage == "write"
    assert summary.aborted is None


def test_a_dead_cluster_stops_the_run_with_every_item_accounted_for(tmp_path: Path) -> None:
    write_images(tmp_path / "ds", 40)
    writer = MemoryWriter(raise_always=True)
    summary = run_index(
        open_source(tmp_path / "ds"),
        writer,
        clip=StubClip(),
        detector=None,
        options=IndexOptions(
            batch_size=2, workers=0, progress=False, queue_batches=1, write_batch_size=2
        ),
    )
    assert summary.aborted is not None
    assert "cluster gone" in summary.aborted
    assert summary.tagged == 0
    assert summary.failed == 40


def test_load_image_converts_to_rgb_and_checks_size(tmp_path: Path) -> None:
    Image.new("L", (10, 20), 7).save(tmp_path / "grey.png")
    image = load_image(tmp_path / "grey.png")
    assert (image.mode, image.size) == ("RGB", (10, 20))
    with pytest.raises(ValueError, match="too large"):
        load_image(tmp_path / "grey.png", max_pixels=199)


def test_device_defaults_to_the_gpu_when_present() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.es
def test_writes_merge_into_elasticsearch(
    tmp_path: Path, es: Elasticsearch, item_index: str
) -> None:
    write_images(tmp_path / "ds", 6)
    write_bad_files(tmp_path / "ds" / "bad")
    source = open_source(tmp_path / "ds")

    def run(training_set: str, force: bool = False) -> Any:
        writer = PredictionWriter(es, item_index, training_set=training_set, force=force)
        return run_index(
            source,
            writer,
            clip=StubClip(),
            detector=StubDetector(),
            options=IndexOptions(batch_size=4, workers=1, progress=False, max_pixels=10**6),
        )

    first = run("v1")
    assert (first.tagged, first.failed, first.predictions) == (6, 3, 18)
    assert run("v1").skipped == 6
    assert run("v2").tagged == 6
    assert run("v1", force=True).tagged == 6
    es.indices.refresh(index=item_index)

    doc = es.get(index=item_index, id="ds/img002.png")["_source"]
    assert doc["width"] == 16
    assert doc["uri"].startswith("file://")
    by_set: dict[str, list[str]] = {}
    for p in doc["image_predictions"] + doc["object_predictions"]:
        by_set.setdefault(p["training_set"], []).append(p["label"])
    assert sorted(by_set["v1"]) == sorted(by_set["v2"]) == ["car", "weather_clear", "weather_rain"]
    assert es.count(index=item_index)["count"] == 6


@pytest.mark.es
def test_cli_index_with_random_weight_models(
    tmp_path: Path,
    es_url: str,
    es: Elasticsearch,
    item_index: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_images(tmp_path / "ds", 3, size=(64, 48))
    (tmp_path / "ds" / "broken.png").write_text("nope")
    monkeypatch.setenv("ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path / "cache"))
    args = [
        "index",
        str(tmp_path / "ds"),
        "--index",
        item_index,
        "--training-set",
        "cli",
        "--clip-model",
        "autotag-tiny",
        "--clip-weights",
        "random",
        "--detector-weights",
        "random:autotag_tiny_fasterrcnn",
        "--score-threshold",
        "0",
        "--workers",
        "1",
        "--batch-size",
        "2",
        "--no-progress",
        "--failures-file",
        str(tmp_path / "failures.jsonl"),
    ]

    assert main(args) == 0

    out = capsys.readouterr().out
    assert "items seen" in out
    es.indices.refresh(index=item_index)
    assert es.count(index=item_index)["count"] == 3
    assert [r["item_id"] for r in load_failures(tmp_path / "failures.jsonl")] == ["ds/broken.png"]
    assert main(args) == 0
    assert "skipped" in capsys.readouterr().out


class _NoResizeClip(StubClip):
    """A preprocess that keeps the image size, so batches may not stack."""

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return torch.zeros(3, image.height, image.width)

    def predict(self, batch: torch.Tensor) -> list[list[tuple[str, float]]]:
        return [[("weather_clear", 0.0)] for _ in range(len(batch))]


def test_an_image_that_does_not_stack_with_its_batch_fails_alone(tmp_path: Path) -> None:
    write_images(tmp_path / "ds", 3)
    Image.new("RGB", (5, 5)).save(tmp_path / "ds" / "img001b.png")
    writer = MemoryWriter()
    summary = run_index(
        open_source(tmp_path / "ds"), writer, clip=_NoResizeClip(), detector=None, options=QUIET
    )
    assert (summary.tagged, summary.failed) == (3, 1)
    assert summary.failures[0].item_id == "ds/img001b.png"


def test_reduced_size_keeps_the_shorter_side_and_the_aspect() -> None:
    assert reduced_size(1280, 720, 320) == (569, 320)
    assert reduced_size(720, 1280, 320) == (320, 569)
    assert reduced_size(300, 200, 320) == (300, 200)  # already small: untouched
    assert reduced_size(5000, 100, 64) == (3200, 64)


def test_open_image_decodes_jpegs_at_a_reduced_scale_but_reports_the_file_size(
    tmp_path: Path,
) -> None:
    Image.new("RGB", (1280, 720), (40, 90, 200)).save(tmp_path / "frame.jpg", quality=90)
    Image.new("RGB", (1280, 720), (40, 90, 200)).save(tmp_path / "frame.png")

    reduced = open_image(tmp_path / "frame.jpg", min_side=320)
    assert reduced.image.size == (640, 360)  # 1/2: 1/4 would make the shorter side 180
    assert (reduced.width, reduced.height, reduced.scale) == (1280, 720, (2.0, 2.0))
    assert reduced.image.mode == "RGB"
    assert open_image(tmp_path / "frame.jpg", min_side=90).image.size == (160, 90)  # 1/8
    assert open_image(tmp_path / "frame.jpg").image.size == (1280, 720)
    assert open_image(tmp_path / "frame.png", min_side=90).image.size == (1280, 720)


class _SizedDetector(StubDetector):
    """The stub detector, stating the shorter side it needs and recording what it got."""

    input_min_side = 100

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def predict(self, batch: list[torch.Tensor]) -> list[list[StubDetection]]:
        self.seen += [(int(t.shape[2]), int(t.shape[1])) for t in batch]
        return super().predict(batch)


def test_boxes_from_a_reduced_decode_are_stored_in_file_pixels(tmp_path: Path) -> None:
    (tmp_path / "ds").mkdir()
    Image.new("RGB", (800, 600), (10, 250, 10)).save(tmp_path / "ds" / "a.jpg", quality=95)
    clip, detector, writer = StubClip(), _SizedDetector(), MemoryWriter()
    clip.input_min_side = 50  # type: ignore[attr-defined]

    run_index(open_source(tmp_path / "ds"), writer, clip=clip, detector=detector, options=QUIET)

    assert detector.seen == [(200, 150)]  # 1/4 scale: the shorter side stays >= 100
    entry = writer.items["ds/a.jpg"]
    assert (entry.item["width"], entry.item["height"]) == (800, 600)
    (car,) = entry.object_predictions
    assert car["bbox"] == {"x1": 0.0, "y1": 0.0, "x2": 800.0, "y2": 600.0}
    assert car["score"] == pytest.approx(2 * 250 / 255 - 1, abs=0.04)

    full = MemoryWriter()
    detector.seen.clear()
    options = IndexOptions(batch_size=4, workers=0, progress=False, reduced_decoding=False)
    run_index(open_source(tmp_path / "ds"), full, clip=clip, detector=detector, options=options)
    assert detector.seen == [(800, 600)]
    assert full.items["ds/a.jpg"].object_predictions[0]["bbox"] == car["bbox"]
