"""Crash and resume: ``kill -9`` an index run half way, run it again, get every item once.

The run is a real subprocess (``python -m cli.indexing index``) with real models (the shipped
tiny ones when present, else seeded random weights of the same architectures) on a generated
dataset, with bad input mixed in: those items are reported, nothing else is lost.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from PIL import Image

from indexer import models
from indexer.report import load_failures
from indexer.synthetic import write_dataset
from indexer.taxonomy import load_taxonomy

N_GOOD = 60
TRAINING_SET = "resume_v1"
ROOT = Path(__file__).resolve().parents[2]


def model_args() -> list[str]:
    """The shipped tiny models if their weights are in the tree, else random weights."""
    if (models.TINY_CLIP_DIR / "open_clip_config.json").is_file():
        clip = ["--clip-weights", models.TINY_CLIP]
    else:
        clip = ["--clip-model", models.TINY_CLIP_MODEL, "--clip-weights", "random"]
    if models.TINY_DETECTOR_PATH.is_file():
        detector = ["--detector-weights", models.TINY_DETECTOR]
    else:
        detector = ["--detector-weights", "random:autotag_tiny_fasterrcnn"]
    return [*clip, *detector, "--score-threshold", "0.3"]


def _dataset(folder: Path) -> Path:
    """The generated dataset's manifest plus four bad rows; returns the manifest."""
    write_dataset(folder, N_GOOD, seed=11)
    manifest = folder / "manifest.jsonl"
    Image.new("RGB", (64, 64), (9, 9, 9)).save(folder / "truncated.png")
    data = (folder / "truncated.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "notes.png").write_text("not an image")
    first = json.loads(manifest.read_text().splitlines()[0])
    bad = [
        {"item_id": "bad-truncated", "uri": "truncated.png"},
        {"item_id": "bad-text", "uri": "notes.png"},
        {"item_id": "bad-missing", "uri": "gone.png"},
        {**first, "uri": "notes.png"},  # duplicate id: the first row wins
    ]
    with manifest.open("a") as out:
        out.writelines(json.dumps(row) + "\n" for row in bad)
    return manifest


def _count(es: Elasticsearch, index: str) -> int:
    es.indices.refresh(index=index)
    return int(es.count(index=index)["count"])


@pytest.mark.es
@pytest.mark.timeout(300)
def test_kill_minus_nine_then_rerun_is_exactly_once(
    tmp_path: Path, es_url: str, es: Elasticsearch, item_index: str
) -> None:
    manifest = _dataset(tmp_path / "ds")
    failures_file = tmp_path / "failures.jsonl"
    command = [
        sys.executable, "-m", "cli.indexing", "index", str(manifest),
        "--index", item_index, "--training-set", TRAINING_SET,
        "--batch-size", "2", "--write-batch-size", "2", "--workers", "1", "--no-progress",
        "--failures-file", str(failures_file), *model_args(),
    ]  # fmt: skip
    env = {
        **os.environ,
        "ES_URL": es_url,
        "HF_HUB_OFFLINE": "1",
        "AUTOTAG_CACHE": str(tmp_path / "cache"),
        "PYTHONPATH": str(ROOT),
    }

    # First run: kill -9 as soon as some (not all) items are in the index.
    victim = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while victim.poll() is None and time.monotonic() < deadline:
            if _count(es, item_index) >= 4:  # refreshed: no second of visibility lag
                break
            time.sleep(0.02)
        assert victim.poll() is None, victim.stdout.read().decode() if victim.stdout else ""
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):  # a decoding worker left behind
            os.killpg(victim.pid, signal.SIGKILL)
        if victim.stdout:
            victim.stdout.close()
    assert victim.returncode == -signal.SIGKILL
    after_crash = _count(es, item_index)
    assert 0 < after_crash < N_GOOD

    # Second run: picks up where the first stopped.
    rerun = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _count(es, item_index) == N_GOOD

    taxonomy = load_taxonomy()
    hits = es.search(index=item_index, size=1000, query={"match_all": {}})["hits"]["hits"]
    assert len(hits) == N_GOOD
    assert len({hit["_id"] for hit in hits}) == N_GOOD
    for hit in hits:
        doc = hit["_source"]
        assert doc["tagged_by"] == [TRAINING_SET]
        image = doc["image_predictions"]
        objects = doc["object_predictions"]
        assert sorted(p["label"] for p in image) == sorted(taxonomy.image_labels)
        ids = Counter(p["id"] for p in image + objects)
        assert max(ids.values()) == 1, f"duplicated predictions in {hit['_id']}"
        assert all(p["training_set"] == TRAINING_SET for p in image + objects)
        assert all(p["status"] == "pending" for p in image + objects)

    # The items already written before the crash were skipped, not redone.
    skipped = re.search(r"skipped \(already tagged\)\W+(\d+)", rerun.stdout)
    assert skipped is not None, rerun.stdout
    assert int(skipped.group(1)) == after_crash

    # Bad input: reported (on both runs), the good rows all present.
    failed = Counter(r["item_id"] for r in load_failures(failures_file))
    assert {"bad-truncated", "bad-text", "bad-missing", "synthetic-11-000000"} <= set(failed)
    assert set(failed) <= {"bad-truncated", "bad-text", "bad-missing", "synthetic-11-000000"}
    assert es.exists(index=item_index, id="synthetic-11-000000")
