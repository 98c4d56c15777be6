"""Benchmark the ``index`` pipeline against the bare models, and its memory as data grows.

Prints two tables:

1. **Throughput** on the same images and batches, in one process: the bare forward passes of
   the image tagger and the detector on batches already decoded and preprocessed in memory,
   versus the whole pipeline (already-tagged lookup, decoding and preprocessing in workers,
   inference, merged writes into Elasticsearch), and the pipeline with its writes discarded
   (Elasticsearch's share of the machine taken out). Model loading is excluded. The runs are
   interleaved over ``--rounds`` rounds and the best time of each is compared.
2. **Peak memory** (RSS of the ``python -m cli.indexing index`` process and of its process tree,
   sampled with psutil) for each dataset size, e.g. 1k and 10k images.

The dataset is the synthetic world (``indexer.synthetic``): ``--unique`` scenes are rendered
once and hard-linked to reach larger sizes. Needs Elasticsearch (``ES_URL``); writes into
throwaway indexes that are deleted afterwards.

``--models tiny`` (default) runs the shipped tiny models on small PNGs, as the tests do.
``--models production`` runs the architectures users deploy, open_clip ``ViT-B-32`` and
torchvision ``fasterrcnn_mobilenet_v3_large_320_fpn``, with seeded random weights (no weights
can be downloaded here; throughput does not depend on their values), on camera-sized JPEGs.

    ES_URL=http://127.0.0.1:19200 .venv/bin/python bench/tagging.py --sizes 1000,10000
    ES_URL=... .venv/bin/python bench/tagging.py --skip-memory --throughput-images 200  # quick
    ES_URL=... .venv/bin/python bench/tagging.py --models production --skip-memory \
        --throughput-images 200 --image-size 1280x720 --format jpeg
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import torch
from rich.console import Console
from rich.table import Table

from cli.gc_tuning import tune_gc_for_bulk_work
from harness.images import ImageFormat, make_dataset
from indexer import models as shipped
from indexer.clip_tagger import ClipTagger
from indexer.decoding import decode_min_side, open_image
from indexer.detector import ObjectDetector
from indexer.pipeline import IndexOptions, default_workers, run_index
from indexer.report import Writer
from indexer.sources import open_source
from indexer.taxonomy import load_taxonomy
from store.connection import connect
from store.mapping import index_settings, item_mapping
from store.writer import ItemPredictions, PredictionWriter, WriteResult

ROOT = Path(__file__).resolve().parents[1]

PRODUCTION_MODELS: tuple[str, str, str] = (
    "ViT-B-32",
    "random",
    "random:fasterrcnn_mobilenet_v3_large_320_fpn",
)


def model_specs(which: str = "tiny") -> tuple[str, str, str]:
    """(clip model, clip weights, detector weights) for ``--models``.

    ``tiny``: the shipped tiny models (random ones of the same shape if they are missing);
    ``production``: the deployed architectures with random weights.
    """
    if which == "production":
        return PRODUCTION_MODELS
    if (shipped.TINY_CLIP_DIR / "open_clip_config.json").is_file():
        clip = ("", shipped.TINY_CLIP)
    else:
        clip = (shipped.TINY_CLIP_MODEL, "random")
    if shipped.TINY_DETECTOR_PATH.is_file():
        detector = shipped.TINY_DETECTOR
    else:
        detector = "random:autotag_tiny_fasterrcnn"
    return clip[0], clip[1], detector


def bare_forward(
    clip: ClipTagger, detector: ObjectDetector, folder: Path, batch_size: int
) -> tuple[int, float]:
    """Seconds for the models alone on the folder's images (decoded beforehand, untimed).

    Decoded as the pipeline decodes them (``decode_min_side``: JPEGs at the reduced scale the
    models still get their full input from), so both runs feed the models the same tensors.
    """
    items = open_source(folder).items
    min_side = decode_min_side(clip, detector)
    batches = []
    for start in range(0, len(items), batch_size):
        images = [
            open_image(item.path, min_side=min_side).image
            for item in items[start : start + batch_size]
            if item.path
        ]
        batches.append(
            (
                torch.stack([clip.preprocess(image) for image in images]),
                [detector.preprocess(image) for image in images],
            )
        )
    started = time.perf_counter()
    with torch.inference_mode():
        for clip_batch, detector_batch in batches:
            clip.predict(clip_batch.to(clip.device))
            detector.predict([t.to(detector.device) for t in detector_batch])
    return len(items), time.perf_counter() - started


BARE = "bare forward"
WRITTEN = "whole pipeline, writing to Elasticsearch"
DISCARDED = "whole pipeline, writes discarded"
RUN_NAMES = [BARE, WRITTEN, DISCARDED]


class DiscardingWriter:
    """Accepts every write and keeps nothing: the pipeline without Elasticsearch's share."""

    training_set = "bench"
    force = False

    def already_tagged(self, item_ids: Sequence[str]) -> set[str]:
        return set()

    def write(self, batch: Sequence[ItemPredictions]) -> WriteResult:
        predictions = sum(len(e.image_predictions) + len(e.object_predictions) for e in batch)
        return WriteResult(written=len(batch), predictions=predictions)


def pipeline_run(
    client: Any,
    clip: ClipTagger,
    detector: ObjectDetector,
    folder: Path,
    options: IndexOptions,
    *,
    discard: bool = False,
) -> tuple[int, float]:
    """Seconds for the whole pipeline on the folder, into a fresh index (or nowhere)."""
    index = f"bench-tagging-{uuid.uuid4().hex[:10]}"
    if not discard:
        client.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    try:
        writer: Writer = (
            DiscardingWriter() if discard else PredictionWriter(client, index, training_set="bench")
        )
        source = open_source(folder)
        started = time.perf_counter()
        summary = run_index(source, writer, clip=clip, detector=detector, options=options)
        elapsed = time.perf_counter() - started
        if summary.tagged != len(source.items):
            raise RuntimeError(f"pipeline tagged {summary.tagged} of {len(source.items)}")
        return summary.tagged, elapsed
    finally:
        if not discard:
            client.indices.delete(index=index, ignore_unavailable=True)


@dataclass
class MemoryRun:
    images: int
    seconds: float
    peak_main_mb: float
    peak_tree_mb: float


def _tree_rss(process: psutil.Process) -> tuple[int, int]:
    try:
        main = process.memory_info().rss
        children = 0
        for child in process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                children += child.memory_info().rss
        return main, main + children
    except psutil.Error:
        return 0, 0


def memory_run(
    client: Any, folder: Path, size: int, args: argparse.Namespace, cache: Path
) -> MemoryRun:
    """Run ``python -m cli.indexing index`` on the folder, sampling its RSS."""
    clip_model, clip_weights, detector_weights = model_specs(args.models)
    index = f"bench-tagging-{uuid.uuid4().hex[:10]}"
    client.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    command = [
        sys.executable, "-m", "cli.indexing", "index", str(folder), "--index", index,
        "--training-set", "bench", "--batch-size", str(args.batch_size),
        "--workers", str(args.workers), "--no-progress", "--device", args.device,
        "--failures-file", str(cache / "failures.jsonl"),
        "--clip-weights", clip_weights, "--detector-weights", detector_weights,
    ]  # fmt: skip
    if clip_model:
        command += ["--clip-model", clip_model]
    env = {**os.environ, "AUTOTAG_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    peak = [0, 0]
    try:
        started = time.perf_counter()
        child = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        process = psutil.Process(child.pid)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                main, tree = _tree_rss(process)
                peak[0], peak[1] = max(peak[0], main), max(peak[1], tree)
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = child.wait()
        done.set()
        sampler.join()
        elapsed = time.perf_counter() - started
        if code != 0:
            raise RuntimeError(f"indexing {size} images exited with {code}")
        client.indices.refresh(index=index)
        count = int(client.count(index=index)["count"])
        if count != size:
            raise RuntimeError(f"indexed {count} of {size} images")
    finally:
        client.indices.delete(index=index, ignore_unavailable=True)
    return MemoryRun(size, elapsed, peak[0] / 2**20, peak[1] / 2**20)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", default="1000,10000", help="dataset sizes for the memory runs (comma list)"
    )
    parser.add_argument(
        "--throughput-images", type=int, default=1000, help="images for the throughput run"
    )
    parser.add_argument("--unique", type=int, default=500, help="distinct scenes rendered")
    parser.add_argument(
        "--models", choices=("tiny", "production"), default="tiny", help="see the docstring"
    )
    parser.add_argument("--image-size", default="192x128", help="WxH of the rendered images")
    parser.add_argument("--format", choices=("png", "jpeg"), default="png")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    parser.add_argument("--skip-memory", action="store_true", help="throughput table only")
    parser.add_argument(
        "--workers", type=int, default=None, help="decoding workers (default: as autotag index)"
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "autotag-bench"
    )
    args = parser.parse_args()
    if args.workers is None:
        args.workers = default_workers(args.device)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    fmt = ImageFormat.parse(args.image_size, args.format)
    console = Console(width=120)
    client = connect()
    cache = args.data_dir / "cache"
    os.environ.setdefault("AUTOTAG_CACHE", str(cache))

    console.print(f"rendering {args.unique} scenes, linking datasets of {sizes} images ...")
    throughput_folder = make_dataset(args.data_dir, args.throughput_images, args.unique, fmt)
    folders = {size: make_dataset(args.data_dir, size, args.unique, fmt) for size in sizes}

    clip_model, clip_weights, detector_weights = model_specs(args.models)
    taxonomy = load_taxonomy()
    clip = ClipTagger(clip_model, clip_weights, taxonomy, device=args.device, cache_dir=cache)
    detector = ObjectDetector(detector_weights, taxonomy, device=args.device)
    options = IndexOptions(
        batch_size=args.batch_size, workers=args.workers, device=args.device, progress=False
    )
    # Warm up both paths (allocator, lazy init) on a few batches.
    bare_forward(clip, detector, make_dataset(args.data_dir, 64, args.unique, fmt), args.batch_size)
    tune_gc_for_bulk_work()  # as ``autotag index`` does once its models are loaded

    # Rounds interleave the three runs so that load from elsewhere hits them alike; the best
    # (least disturbed) time of each is compared, the median shown for the spread.
    runs: dict[str, list[float]] = {name: [] for name in RUN_NAMES}
    n = args.throughput_images
    for round_number in range(args.rounds):
        order = RUN_NAMES[round_number % 3 :] + RUN_NAMES[: round_number % 3]
        for name in order:
            if name == BARE:
                n, seconds = bare_forward(clip, detector, throughput_folder, args.batch_size)
            else:
                discard = name == DISCARDED
                n, seconds = pipeline_run(
                    client, clip, detector, throughput_folder, options, discard=discard
                )
            runs[name].append(seconds)
    bare_best = min(runs[BARE])

    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    setup = (
        f"{device}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}, "
        f"batch {args.batch_size}, workers {args.workers}; clip {clip.model_name}, "
        f"detector {detector.model_name}; images {fmt.width}x{fmt.height} {fmt.suffix.upper()}"
    )
    table = Table(title=f"throughput, {n} images, best of {args.rounds} ({setup})")
    for column in ("run", "best s", "median s", "images/s (best)", "vs bare (best)"):
        table.add_column(column, justify="right" if column != "run" else "left")
    for name in RUN_NAMES:
        best = min(runs[name])
        table.add_row(
            name,
            f"{best:.1f}",
            f"{statistics.median(runs[name]):.1f}",
            f"{n / best:.1f}",
            f"{bare_best / best:.2f}x",
        )
    console.print(table)
    if args.skip_memory:
        return 0

    memory = Table(title="peak memory of `python -m cli.indexing index` (RSS, MiB)")
    for column in ("images", "wall s (incl. start-up)", "main process", "process tree"):
        memory.add_column(column, justify="right")
    for size in sizes:
        run = memory_run(client, folders[size], size, args, cache)
        memory.add_row(
            str(run.images),
            f"{run.seconds:.1f}",
            f"{run.peak_main_mb:.0f}",
            f"{run.peak_tree_mb:.0f}",
        )
    console.print(memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
