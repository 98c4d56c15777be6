"""The ``autotag index`` and ``autotag import`` subcommands.

``cli/main.py`` (the ``autotag`` program) calls :func:`add_subcommands`; ``python -m cli.indexing``
runs the same two subcommands on their own. Each handler returns the exit status: 0 when the
run finished (per-item failures are reported, not fatal), 1 when it could not run or stopped
early, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

from rich.console import Console

from indexer.score_scale import ScoreScale
from store.settings import StoreSettings

DEFAULT_FAILURES_FILE: Final = Path(".autotag") / "failures.jsonl"

_INDEX_HELP: Final = """\
Tag images with the CLIP tagger and the object detector and write the predictions under a
training set. SOURCE is a folder of images (searched recursively; item ids are
DATASET/relative/path) or a manifest (.jsonl or .csv with item_id, uri, dataset and optional
metadata). Items this training set already tagged are skipped unless --force. The models must
be chosen: real weights (--clip-model/--clip-weights, --detector-weights or --no-detector), or
--demo-models for the shipped tiny ones, which know only synthetic driving scenes.
"""

# Printed when `autotag index` is given no model choice: the shipped tiny models write confident
# nonsense on real photos, so they are never picked silently.
_CHOOSE_MODELS: Final = """\
autotag index: choose the models to tag with ({missing}).
  CLIP, real weights (e.g. ViT-B-32 with its laion2b_s34b_b79k checkpoint file):
    --clip-model ViT-B-32 --clip-weights FILE  a checkpoint (.safetensors, .bin, .pt, .pth)
    --clip-weights local-dir:FOLDER            open_clip_config.json + weights in FOLDER
    --clip-model ViT-B-32 --clip-weights laion2b_s34b_b79k  open_clip pretrained tag (network)
    --no-clip                                  no image tags
  detector:
    --detector-weights FILE                    torchvision:ARCH[:FILE] or FILE.safetensors+.json
    --no-detector                              no object boxes
  or --demo-models: the shipped tiny demo models, trained on synthetic driving scenes only
    (on real photos they write confident nonsense; their model names start with "demo:").
See "Indexing your images" in the README."""

_TRUTH_HELP: Final = """\
Load ground truth as its own named source, stored beside the predictions (never mixed with
them). FILE is JSONL (one item per line: item_id, tags [labels], objects [{label, bbox
[x1, y1, x2, y2], iscrowd?}]) or, with --coco, a COCO instances file. Importing a source again
replaces its annotations. Labels are normalised like prediction imports.
"""

_IMPORT_HELP: Final = """\
Load predictions made elsewhere under a training set, through the same writer as `index`.
SOURCE is a JSONL file (one item per line: item_id, optional dataset/uri/width/height/metadata,
image_predictions [{label, score, model?}], object_predictions [{label, score, bbox}]) or,
with --coco-images, a COCO detection results file ([{image_id, category_id, bbox, score}]).
Labels are normalised (`traffic light` -> traffic_light) and kept even when the taxonomy does
not know them, unless --taxonomy-only. Scores are read on --score-scale: probability (COCO's
default; p stored as 2p - 1) or signed (JSONL's default; [-1, 1] stored as given).
"""


def add_subcommands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register ``index`` and ``import`` on the ``autotag`` program's subparsers."""
    index = subparsers.add_parser(
        "index", help="tag images and index the predictions", description=_INDEX_HELP
    )
    index.add_argument("source", type=Path, metavar="SOURCE", help="folder of images or manifest")
    _common_options(index)
    models = index.add_argument_group("models (required: real weights or --demo-models)")
    models.add_argument(
        "--clip-model",
        default=None,
        help="open_clip architecture of --clip-weights, e.g. ViT-B-32 (not needed with local-dir:)",
    )
    models.add_argument(
        "--clip-weights",
        default=None,
        help="checkpoint file, local-dir:FOLDER, or an open_clip pretrained tag (needs network)",
    )
    models.add_argument("--no-clip", action="store_true", help="skip image-level tagging")
    models.add_argument(
        "--no-embeddings",
        dest="embeddings",
        action="store_false",
        help="do not store the CLIP image embeddings (used by similar:/similar_to: and autotags)",
    )
    models.add_argument(
        "--detector-weights",
        default=None,
        help="torchvision:ARCH[:FILE] or FILE.safetensors with FILE.json",
    )
    models.add_argument("--no-detector", action="store_true", help="skip object detection")
    models.add_argument(
        "--demo-models",
        action="store_true",
        help="the shipped tiny demo models (synthetic driving scenes only; model names start "
        "with demo:), for trying autotag out; not with --clip-*/--detector-weights",
    )
    models.add_argument(
        "--score-threshold",
        type=float,
        default=0.5,
        help="keep detections whose detector confidence (a probability) is at least this; "
        "they are stored signed, as 2p - 1 (default 0.5, stored as 0)",
    )
    models.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (GPU when present; default)"
    )
    run = index.add_argument_group("run")
    run.add_argument("--batch-size", type=_positive, default=32, help="images per model batch")
    run.add_argument(
        "--workers",
        type=_non_negative,
        default=None,
        help="decoding worker processes (default: the cores inference leaves free; 0 decodes "
        "in this process)",
    )
    run.add_argument(
        "--max-pixels",
        type=_positive,
        default=None,
        help="refuse images with more pixels than this (default 64M)",
    )
    run.add_argument(
        "--dataset",
        help="dataset name of a folder; a manifest's rows are restricted to this dataset",
    )
    run.add_argument(
        "--filter",
        dest="filters",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only items whose metadata KEY (dotted for nested) equals VALUE; repeatable, ANDed",
    )
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    index.set_defaults(func=run_index_command)

    imports = subparsers.add_parser(
        "import", help="import predictions made elsewhere", description=_IMPORT_HELP
    )
    imports.add_argument("source", type=Path, metavar="SOURCE", help="JSONL or COCO results file")
    _common_options(imports)
    imports.add_argument(
        "--coco-images",
        type=Path,
        help="COCO images json (images with id and file_name, and categories); "
        "makes SOURCE a COCO detection results file",
    )
    imports.add_argument(
        "--dataset",
        help="dataset of COCO images (item id DATASET/file_name, as `index` names folder "
        "images) or of JSONL items that name none",
    )
    imports.add_argument("--model", default=None, help="model name for predictions that name none")
    imports.add_argument(
        "--score-threshold",
        type=float,
        default=0.0,
        help="COCO: drop detections scoring below this, on the file's scale (default 0)",
    )
    imports.add_argument(
        "--score-scale",
        choices=[scale.value for scale in ScoreScale],
        default=None,
        help="probability: scores in [0, 1], stored as 2p - 1 (default for COCO); "
        "signed: scores in [-1, 1], stored as given (default for JSONL)",
    )
    imports.add_argument(
        "--taxonomy-only",
        action="store_true",
        help="keep only labels the taxonomy knows (default: keep new labels too)",
    )
    imports.set_defaults(func=run_import_command)

    truth = subparsers.add_parser(
        "import-truth", help="import ground truth as a named source", description=_TRUTH_HELP
    )
    truth.add_argument("file", type=Path, metavar="FILE", help="JSONL or COCO instances file")
    truth.add_argument("--source", required=True, help='name of this ground truth, e.g. "coco_val"')
    truth.add_argument(
        "--coco", action="store_true", help="FILE is a COCO instances file (default: JSONL)"
    )
    truth.add_argument(
        "--dataset", help="dataset of COCO images (item id DATASET/file_name, as `index` names)"
    )
    truth.add_argument(
        "--index", default=None, help="index or alias to write (default: the AUTOTAG_INDEX setting)"
    )
    truth.add_argument(
        "--taxonomy", type=Path, default=None, help="taxonomy TOML (default: the shipped one)"
    )
    truth.add_argument(
        "--taxonomy-only", action="store_true", help="keep only labels the taxonomy knows"
    )
    truth.add_argument(
        "--failures-file",
        type=Path,
        default=DEFAULT_FAILURES_FILE,
        help=f"append failed items here as JSONL (default {DEFAULT_FAILURES_FILE})",
    )
    truth.add_argument(
        "--write-batch-size", type=_positive, default=500, help="items per bulk write"
    )
    truth.set_defaults(func=run_import_truth_command)


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--index", default=None, help="index or alias to write (default: the AUTOTAG_INDEX setting)"
    )
    parser.add_argument(
        "--training-set", required=True, help="model-version name recorded on every prediction"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="redo items this training set already tagged (replaces only its pending "
        "predictions; review decisions are kept)",
    )
    parser.add_argument(
        "--taxonomy", type=Path, default=None, help="taxonomy TOML (default: the shipped one)"
    )
    parser.add_argument(
        "--failures-file",
        type=Path,
        default=DEFAULT_FAILURES_FILE,
        help=f"append failed items here as JSONL (default {DEFAULT_FAILURES_FILE})",
    )
    parser.add_argument(
        "--write-batch-size", type=_positive, default=500, help="items per bulk write"
    )


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive integer")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a non-negative integer")
    return value


def _console() -> Console:
    return Console(stderr=True)


@dataclass(frozen=True)
class IndexJob:
    """One ``autotag index`` run, as the command line or the main job describes it."""

    source: Path
    training_set: str
    index: str | None = None  # None: the settings' index
    dataset: str | None = None
    filters: Sequence[str] = ()
    clip_model: str | None = None
    clip_weights: str | None = None
    no_clip: bool = False
    embeddings: bool = True
    detector_weights: str | None = None
    no_detector: bool = False
    # the shipped tiny models, which know only the synthetic world; never picked silently
    demo_models: bool = False
    score_threshold: float = 0.5
    device: str = "auto"
    batch_size: int = 32
    workers: int | None = None
    max_pixels: int | None = None
    force: bool = False
    taxonomy: Path | None = None
    failures_file: Path = DEFAULT_FAILURES_FILE
    write_batch_size: int = 500
    progress: bool = True

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> IndexJob:
        return cls(**{spec.name: getattr(args, spec.name) for spec in fields(cls)})


def _writer(
    settings: StoreSettings,
    index: str | None,
    training_set: str,
    *,
    force: bool,
    batch_size: int,
) -> Any:
    """A writer into ``index`` (an index or alias; created behind an alias when missing)."""
    from cli.gc_tuning import tune_gc_for_bulk_work
    from store.admin import ensure_index
    from store.connection import connect
    from store.writer import PredictionWriter

    client = connect(settings=settings, request_timeout=settings.es_bulk_timeout)
    target = index or settings.index
    if not client.indices.exists(index=target):
        ensure_index(client, target)
    tune_gc_for_bulk_work()  # set-up is done: models loaded, index ready
    return PredictionWriter(
        client, target, training_set=training_set, force=force, batch_size=batch_size
    )


def model_choice_problem(job: IndexJob) -> str | None:
    """Why ``job`` cannot run as chosen (the message to print), or ``None`` when it can."""
    explicit = [
        option
        for option, value in (
            ("--clip-model", job.clip_model),
            ("--clip-weights", job.clip_weights),
            ("--detector-weights", job.detector_weights),
        )
        if value
    ]
    if job.demo_models:
        if explicit:
            return (
                f"autotag index: --demo-models picks the shipped demo models; drop "
                f"{', '.join(explicit)} or --demo-models"
            )
        return None
    missing = []
    if not job.no_clip and not job.clip_weights:
        missing.append("no CLIP weights")
    if not job.no_detector and not job.detector_weights:
        missing.append("no detector weights")
    if missing:
        return _CHOOSE_MODELS.format(missing=" and ".join(missing) + " given")
    needs_arch = not job.no_clip and not job.clip_model
    if needs_arch and not str(job.clip_weights).startswith("local-dir:"):
        return "autotag index: --clip-model ARCH is required unless --clip-weights is local-dir:"
    return None


def run_index_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    """Handler of ``autotag index``."""
    return run_index_job(IndexJob.from_args(args), settings)


def run_index_job(job: IndexJob, settings: StoreSettings) -> int:
    """Tag ``job.source`` and write its predictions; the exit status of the run."""
    from indexer import models as shipped
    from indexer.decoding import DEFAULT_MAX_PIXELS
    from indexer.pipeline import (
        IndexOptions,
        default_workers,
        resolve_device,
        run_index,
    )
    from indexer.report import FailureLog
    from indexer.sources import SliceFilter, open_source
    from indexer.taxonomy import load_taxonomy

    console = _console()
    if job.no_clip and job.no_detector:
        console.print("[red]autotag index: --no-clip and --no-detector leave nothing to do[/red]")
        return 2
    problem = model_choice_problem(job)
    if problem is not None:
        console.print(problem, style="red", markup=False, highlight=False, soft_wrap=True)
        return 2
    device = resolve_device(job.device)
    from store.embeddings import EmbeddingModelMismatch, record_embedding_model

    try:
        slice_filter = SliceFilter.parse([job.dataset] if job.dataset else [], list(job.filters))
        source = open_source(job.source, slice_filter=slice_filter, dataset=job.dataset)
        taxonomy = load_taxonomy(job.taxonomy)
        clip = None
        if not job.no_clip:
            from indexer.clip_tagger import ClipTagger, default_cache_dir

            clip = ClipTagger(
                job.clip_model or "",
                shipped.TINY_CLIP if job.demo_models else str(job.clip_weights),
                taxonomy,
                device=device,
                cache_dir=default_cache_dir(settings.cache_dir()),
            )
        detector = None
        if not job.no_detector:
            from indexer.detector import ObjectDetector

            detector = ObjectDetector(
                shipped.TINY_DETECTOR if job.demo_models else str(job.detector_weights),
                taxonomy,
                device=device,
                score_threshold=job.score_threshold,
            )
        writer = _writer(
            settings,
            job.index,
            job.training_set,
            force=job.force,
            batch_size=job.write_batch_size,
        )
        if clip is not None and job.embeddings:
            # One model's embeddings per index: recorded before the first one is written.
            record_embedding_model(writer.client, writer.index, clip.embedding_model)
    except EmbeddingModelMismatch as error:
        console.print(f"[red]autotag index: {error}; or --no-embeddings[/red]", highlight=False)
        return 1
    except Exception as error:  # a clear one-line message, not a traceback
        console.print(f"[red]autotag index: {error}[/red]", highlight=False)
        return 1
    record_roots(writer, job.source, source, console)
    options = IndexOptions(
        batch_size=job.batch_size,
        workers=default_workers(device) if job.workers is None else job.workers,
        device=device,
        max_pixels=job.max_pixels or DEFAULT_MAX_PIXELS,
        write_batch_size=job.write_batch_size,
        progress=job.progress,
        embeddings=job.embeddings,
    )
    with FailureLog(job.failures_file, training_set=job.training_set) as failure_log:
        try:
            summary = run_index(
                source,
                writer,
                clip=clip,
                detector=detector,
                options=options,
                failure_log=failure_log,
                console=console,
            )
        except Exception as error:  # e.g. a decoding worker killed by the OS
            console.print(
                f"[red]autotag index stopped: {type(error).__name__}: {error}[/red]\n"
                "Items written so far are kept; run the same command again to resume.",
                highlight=False,
            )
            return 1
    return report(summary, console, failures_file=job.failures_file, title="autotag index")


def record_roots(writer: Any, location: Path, source: Any, console: Console) -> None:
    """Record the folders of this run's images on the index, so the API may serve them.

    A folder source is recorded itself; a manifest, by the folders holding its images. Failing
    to record is reported and the run goes on: tagging does not need it.
    """
    from store.image_roots import folders_of_images, record_image_roots

    if location.is_dir():
        folders = [str(location)]
    else:
        folders = folders_of_images(item.path for item in source.items if item.path is not None)
    try:
        record_image_roots(writer.client, writer.index, folders)
    except Exception as error:
        console.print(
            f"[yellow]autotag index: the image folders could not be recorded ({error}); "
            "the API will not show these images unless AUTOTAG_IMAGE_ROOTS names them[/yellow]",
            highlight=False,
        )


def run_import_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    """Handler of ``autotag import``."""
    from indexer.importer import read_coco, read_jsonl, run_import
    from indexer.report import FailureLog
    from indexer.score_scale import DEFAULT_COCO_SCALE, DEFAULT_JSONL_SCALE
    from indexer.taxonomy import load_taxonomy

    console = _console()
    try:
        taxonomy = load_taxonomy(args.taxonomy)
        if args.coco_images is not None:
            batch = read_coco(
                args.source,
                args.coco_images,
                taxonomy=taxonomy,
                dataset=args.dataset,
                model=args.model or "coco-import",
                score_threshold=args.score_threshold,
                taxonomy_only=args.taxonomy_only,
                score_scale=ScoreScale(args.score_scale or DEFAULT_COCO_SCALE),
            )
        else:
            batch = read_jsonl(
                args.source,
                dataset=args.dataset,
                model=args.model or "import",
                taxonomy=taxonomy,
                taxonomy_only=args.taxonomy_only,
                score_scale=ScoreScale(args.score_scale or DEFAULT_JSONL_SCALE),
            )
        writer = _writer(
            settings,
            args.index,
            args.training_set,
            force=args.force,
            batch_size=args.write_batch_size,
        )
    except Exception as error:
        console.print(f"[red]autotag import: {error}[/red]", highlight=False)
        return 1
    with FailureLog(args.failures_file, training_set=args.training_set) as failure_log:
        summary = run_import(batch, writer, failure_log=failure_log)
    for note in batch.summary_notes():
        console.print(note, highlight=False, markup=False)
    return report(summary, console, failures_file=args.failures_file, title="autotag import")


def run_import_truth_command(args: argparse.Namespace, settings: StoreSettings) -> int:
    """Handler of ``autotag import-truth``."""
    from evaluation.report import REVIEWS
    from indexer.importer import run_import
    from indexer.report import FailureLog
    from indexer.taxonomy import load_taxonomy
    from indexer.truth import read_truth_coco, read_truth_jsonl
    from store.admin import ensure_index, update_mapping
    from store.connection import connect
    from store.truth import TruthWriter

    console = _console()
    if args.source.strip().lower() == REVIEWS:
        console.print(
            f'[red]autotag import-truth: "{REVIEWS}" names the review decisions in'
            " `autotag evaluate --truth`; choose another source name[/red]",
            highlight=False,
        )
        return 2
    try:
        taxonomy = load_taxonomy(args.taxonomy)
        read = read_truth_coco if args.coco else read_truth_jsonl
        batch = read(
            args.file,
            source=args.source,
            dataset=args.dataset,
            taxonomy=taxonomy,
            taxonomy_only=args.taxonomy_only,
        )
        client = connect(settings=settings, request_timeout=settings.es_bulk_timeout)
        target = args.index or settings.index
        if not client.indices.exists(index=target):
            ensure_index(client, target)
        elif added := sorted(
            {name for names in update_mapping(client, target).values() for name in names}
        ):
            console.print(f"added to the mapping of {target}: {', '.join(added)}", highlight=False)
        writer = TruthWriter(client, target, source=args.source, batch_size=args.write_batch_size)
    except Exception as error:
        console.print(f"[red]autotag import-truth: {error}[/red]", highlight=False)
        return 1
    with FailureLog(args.failures_file, training_set=args.source) as failure_log:
        summary = run_import(batch, writer, failure_log=failure_log)
    for note in batch.summary_notes():
        console.print(note, highlight=False, markup=False)
    return report(summary, console, failures_file=args.failures_file, title="autotag import-truth")


def report(summary: Any, console: Console, *, failures_file: Path, title: str) -> int:
    """Print the summary table and the failures; the exit status of the run."""
    out = Console()
    out.print(summary.table(title))
    if summary.failures:
        shown = summary.failures[:20]
        for failure in shown:
            console.print(
                f"[yellow]failed[/yellow] {failure.item_id} ({failure.stage}): {failure.reason}",
                markup=True,
                highlight=False,
            )
        more = len(summary.failures) - len(shown)
        if more:
            console.print(f"... and {more} more")
        console.print(f"failures appended to {failures_file}")
    if summary.aborted:
        console.print(f"[red]stopped early: {summary.aborted}[/red]")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cli.indexing {index,import} ...``."""
    parser = argparse.ArgumentParser(prog="python -m cli.indexing")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_subcommands(subparsers)
    args = parser.parse_args(argv)
    status: int = args.func(args, StoreSettings())
    return status


if __name__ == "__main__":
    sys.exit(main())
