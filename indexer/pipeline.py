"""The ``index`` job: images in, predictions written, every item accounted for.

Three stages run at once:

1. DataLoader workers open, check and decode images and run the taggers' ``preprocess``
   (a bad image becomes a :class:`Failure` for that item, never an exception);
2. the calling thread runs the models on whole batches;
3. a background thread merges the predictions into Elasticsearch through the
   :class:`~store.writer.PredictionWriter`, fed by a bounded queue so memory stays flat.

Items this training set already tagged are skipped before any image is opened (unless the
writer forces). Every item ends up in exactly one of: tagged, skipped, failed. Failures are
appended to a JSONL file as they happen, so a killed run still leaves its record behind.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

import torch
from PIL import Image
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from torch.utils.data import DataLoader

from indexer.decoding import (
    DEFAULT_MAX_PIXELS,
    Batch,
    ImageDataset,
    collate,
    decode_min_side,
    describe,
    preprocessor_of,
    worker_init,
)
from indexer.report import Failure, FailureLog, RunSummary, Writer
from indexer.score_scale import ScoreScale, to_signed
from indexer.sources import Source, SourceItem
from store import schema as f
from store.writer import ItemPredictions, WriteResult

# Give up after this many consecutive batches whose write raised (Elasticsearch is gone).
MAX_CONSECUTIVE_WRITE_ERRORS: Final = 3


class Detection(Protocol):
    """One detected object, boxes in pixel coordinates of the original image."""

    @property
    def label(self) -> str: ...
    @property
    def score(self) -> float: ...
    @property
    def bbox(self) -> tuple[float, float, float, float]: ...


class ImageTagger(Protocol):
    """Image-level tagging (CLIP): a score for every image tag of the taxonomy."""

    model_name: str

    def preprocess(self, image: Image.Image) -> torch.Tensor: ...
    def predict(self, batch: torch.Tensor) -> list[list[tuple[str, float]]]: ...


@runtime_checkable
class EmbeddingTagger(ImageTagger, Protocol):
    """An image tagger that also hands back the image embeddings it computed (CLIP)."""

    def predict_with_embeddings(
        self, batch: torch.Tensor
    ) -> tuple[list[list[tuple[str, float]]], torch.Tensor]: ...


class ObjectDetector(Protocol):
    """Object detection on a list of (differently sized) preprocessed images."""

    model_name: str

    def preprocess(self, image: Image.Image) -> torch.Tensor: ...
    def predict(self, batch: list[torch.Tensor]) -> Sequence[Sequence[Detection]]: ...


@dataclass(frozen=True)
class IndexOptions:
    """How to run the job (the models and the writer are passed separately)."""

    batch_size: int = 32
    workers: int = 1
    device: str = "cpu"
    max_pixels: int = DEFAULT_MAX_PIXELS
    # JPEGs decoded at a reduced scale when every model resizes to less (see ``open_image``).
    reduced_decoding: bool = True
    # Inference batches waiting for the writer; bounds memory when Elasticsearch is slow.
    queue_batches: int = 8
    # Store the CLIP image embedding of each item (when the tagger computes one).
    embeddings: bool = True
    write_batch_size: int = 500
    progress: bool = True


def resolve_device(requested: str | None) -> str:
    """``auto``/None means the GPU when torch sees one, else the CPU."""
    if requested in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def default_workers(device: str) -> int:
    """Decoding workers: the cores inference leaves free, at most eight.

    On an accelerator that is every core but the one feeding it. On the CPU the models
    already run ``torch.get_num_threads()`` threads, one per core, so only cores beyond those
    decode; with none left, images are decoded in this process between batches, which is
    faster than a worker fighting the models for a core (``bench/tagging.py`` on 2 cores,
    tiny models: 0.92x of the bare models against 0.72x with one worker; production-size
    models 1.04x either way).
    """
    cores = os.cpu_count() or 1
    if device.startswith("cpu"):
        return max(0, min(8, cores - torch.get_num_threads()))
    return max(1, min(8, cores - 1))


# --- stage 2: inference ----------------------------------------------------------------------


def _clamp(score: float) -> float:
    # Calibrated scores are in [-1, 1] up to float noise; keep a stray 1.0000001 storable.
    return min(f.SCORE_MAX, max(f.SCORE_MIN, float(score)))


def _image_predictions(
    tagger: ImageTagger, scores: Sequence[tuple[str, float]]
) -> list[dict[str, Any]]:
    return [
        {f.PRED_LABEL: label, f.PRED_SCORE: _clamp(score), f.PRED_MODEL: tagger.model_name}
        for label, score in scores
    ]


def _object_predictions(
    detector: ObjectDetector, detections: Sequence[Detection]
) -> list[dict[str, Any]]:
    out = []
    for detection in detections:
        x1, y1, x2, y2 = (float(v) for v in detection.bbox)
        out.append(
            {
                f.PRED_LABEL: detection.label,
                # Detectors answer probabilities; the index is signed, as for a COCO import.
                f.PRED_SCORE: to_signed(detection.score, ScoreScale.PROBABILITY),
                f.PRED_MODEL: detector.model_name,
                f.PRED_BBOX: {"x1": x1, "y1": y1, "x2": x2, "y2": y2},
            }
        )
    return out


def _to_file_pixels(predictions: list[dict[str, Any]], scale: tuple[float, float]) -> None:
    """Boxes found on a reduced decode, in place, in the image file's pixel coordinates."""
    sx, sy = scale
    for prediction in predictions:
        box = prediction[f.PRED_BBOX]
        box["x1"], box["x2"] = box["x1"] * sx, box["x2"] * sx
        box["y1"], box["y2"] = box["y1"] * sy, box["y2"] * sy


def _to_device(tensor: torch.Tensor, device: str) -> torch.Tensor:
    return tensor if device == "cpu" else tensor.to(device, non_blocking=True)


# Per item: image predictions, object predictions, the image embedding (or None).
_Outputs = tuple[list[dict[str, Any]], list[dict[str, Any]], Any]


class _Models:
    """Runs the configured models on a batch, isolating an item whose inference fails."""

    def __init__(
        self,
        clip: ImageTagger | None,
        detector: ObjectDetector | None,
        device: str,
        *,
        embeddings: bool = True,
    ):
        self.clip = clip
        self.detector = detector
        self.device = device
        self.embeddings = embeddings and isinstance(clip, EmbeddingTagger)

    def predict(self, batch: Batch) -> tuple[list[_Outputs], list[tuple[int, str]]]:
        """Per decoded item (in order): its outputs; failures."""
        try:
            return self._predict(batch.clip_inputs, batch.detector_inputs, len(batch.decoded)), []
        except Exception:
            if len(batch.decoded) == 1:
                raise
        # One bad input must not cost its batch: retry item by item.
        results: list[_Outputs] = []
        failures: list[tuple[int, str]] = []
        for i in range(len(batch.decoded)):
            clip = batch.clip_inputs[i : i + 1] if batch.clip_inputs is not None else None
            det = batch.detector_inputs[i : i + 1] if batch.detector_inputs is not None else None
            try:
                results.extend(self._predict(clip, det, 1))
            except Exception as error:
                failures.append((i, describe(error)))
                results.append(([], [], None))
        return results, failures

    def _predict(
        self, clip_inputs: torch.Tensor | None, det_inputs: list[torch.Tensor] | None, n: int
    ) -> list[_Outputs]:
        image_preds: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        object_preds: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        vectors: list[Any] = [None] * n
        with torch.inference_mode():
            if self.clip is not None:
                if clip_inputs is None:
                    raise ValueError("image tagger input missing")
                inputs = _to_device(clip_inputs, self.device)
                if self.embeddings and isinstance(self.clip, EmbeddingTagger):
                    tags, features = self.clip.predict_with_embeddings(inputs)
                    # float32 rows: the bulk serializer writes them compactly (orjson)
                    vectors = list(features.numpy().astype("float32"))
                else:
                    tags = self.clip.predict(inputs)
                image_preds = [_image_predictions(self.clip, scores) for scores in tags]
            if self.detector is not None:
                if det_inputs is None:
                    raise ValueError("detector input missing")
                found = self.detector.predict([_to_device(t, self.device) for t in det_inputs])
                object_preds = [_object_predictions(self.detector, d) for d in found]
        if len(image_preds) != n or len(object_preds) != n or len(vectors) != n:
            raise RuntimeError(f"a model returned {len(image_preds)} results for {n} images")
        return list(zip(image_preds, object_preds, vectors, strict=True))


# --- stage 3: writing (background thread) ---------------------------------------------------


_STOP: Final = object()


class _WriterThread(threading.Thread):
    """Drains the queue into the writer, coalescing inference batches into bulk writes."""

    def __init__(
        self,
        writer: Writer,
        work: queue.Queue[Any],
        *,
        write_batch_size: int,
        on_failure: Callable[[Failure], None],
        on_written: Callable[[int], None],
    ) -> None:
        super().__init__(name="autotag-writer", daemon=True)
        self.writer = writer
        self.work = work
        self.write_batch_size = write_batch_size
        self.on_failure = on_failure
        self.on_written = on_written
        self.result = WriteResult()
        self.fatal: str | None = None

    def run(self) -> None:
        try:
            self._drain_queue()
        except Exception as error:  # never die silently: the main thread checks ``fatal``
            self.fatal = f"writer thread failed: {describe(error)}"

    def _drain_queue(self) -> None:
        stop = False
        consecutive_errors = 0
        while not stop:
            batch: list[ItemPredictions] = []
            first = self.work.get()
            if first is _STOP:
                break
            batch.extend(first)
            while len(batch) < self.write_batch_size:
                try:
                    more = self.work.get_nowait()
                except queue.Empty:
                    break
                if more is _STOP:
                    stop = True
                    break
                batch.extend(more)
            try:
                result = self.writer.write(batch)
            except Exception as error:
                consecutive_errors += 1
                reason = f"write failed: {describe(error)}"
                for entry in batch:
                    self._fail(entry, reason)
                if consecutive_errors >= MAX_CONSECUTIVE_WRITE_ERRORS:
                    self.fatal = reason
                    return
                continue
            consecutive_errors = 0
            self.result.add(result)
            uris = {entry.item_id: str(entry.item.get(f.URI)) for entry in batch}
            for item_id, reason in result.failed:
                self.on_failure(Failure(item_id, uris.get(item_id), "write", reason))
            self.on_written(len(batch))

    def _fail(self, entry: ItemPredictions, reason: str) -> None:
        self.result.failed.append((entry.item_id, reason))
        self.on_failure(Failure(entry.item_id, str(entry.item.get(f.URI)), "write", reason))


# --- the job ---------------------------------------------------------------------------------


class _ItemsPerSecond(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("-- items/s" if speed is None else f"{speed:.1f} items/s", style="cyan")


def _progress(enabled: bool, console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _ItemsPerSecond(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TimeElapsedColumn(),
        TextColumn("written {task.fields[written]}"),
        console=console or Console(stderr=True),
        disable=not enabled,
        transient=False,
    )


def todo_items(source: Source, writer: Writer, chunk: int = 1000) -> tuple[list[SourceItem], int]:
    """The items still to tag and how many were skipped as already tagged by this training set."""
    if writer.force:
        return list(source.items), 0
    todo: list[SourceItem] = []
    skipped = 0
    for start in range(0, len(source.items), chunk):
        part = source.items[start : start + chunk]
        done = writer.already_tagged([item.item_id for item in part])
        skipped += len(done)
        todo.extend(item for item in part if item.item_id not in done)
    return todo, skipped


def run_index(
    source: Source,
    writer: Writer,
    *,
    clip: ImageTagger | None,
    detector: ObjectDetector | None,
    options: IndexOptions | None = None,
    failure_log: FailureLog | None = None,
    console: Console | None = None,
) -> RunSummary:
    """Tag the items of ``source`` that need it and write their predictions."""
    if clip is None and detector is None:
        raise ValueError("nothing to run: no image tagger and no detector")
    options = options or IndexOptions()
    started = time.perf_counter()
    summary = RunSummary(seen=len(source.items) + len(source.problems))
    lock = threading.Lock()

    def fail(failure: Failure) -> None:
        with lock:
            summary.failures.append(failure)
        if failure_log is not None:
            failure_log.record(failure)

    for problem in source.problems:
        fail(Failure(problem.item_id, problem.uri, "source", problem.reason))

    todo, summary.skipped = todo_items(source, writer)
    paths = [str(item.path) for item in todo]
    dataset = ImageDataset(
        paths,
        preprocessor_of(clip),
        preprocessor_of(detector),
        options.max_pixels,
        min_side=decode_min_side(clip, detector) if options.reduced_decoding else None,
    )
    loader = DataLoader(
        dataset,
        batch_size=options.batch_size,
        shuffle=False,
        num_workers=options.workers,
        collate_fn=collate,
        pin_memory=options.device.startswith("cuda"),
        worker_init_fn=worker_init if options.workers else None,
        prefetch_factor=4 if options.workers else None,
    )
    models = _Models(clip, detector, options.device, embeddings=options.embeddings)
    work: queue.Queue[Any] = queue.Queue(maxsize=max(1, options.queue_batches))

    # Fork the decoding workers before any other thread of ours (progress, writer) exists.
    batches: Iterator[Batch] = iter(loader) if todo else iter(())
    with _progress(options.progress and bool(todo), console) as progress:
        task = progress.add_task("tagging", total=len(todo), written=0)
        written = [0]

        def on_written(n: int) -> None:
            written[0] += n
            progress.update(task, written=written[0])

        writer_thread = _WriterThread(
            writer,
            work,
            write_batch_size=options.write_batch_size,
            on_failure=fail,
            on_written=on_written,
        )
        writer_thread.start()
        try:
            for batch in batches:
                outputs = _handle_batch(batch, todo, models, fail)
                if outputs and not _put(work, outputs, writer_thread):
                    break
                progress.advance(task, len(batch.decoded) + len(batch.failed))
        finally:
            _put(work, _STOP, writer_thread)
            writer_thread.join()
            del batches  # shuts the workers down
        if writer_thread.fatal:
            _drain(work, fail, f"not written: {writer_thread.fatal}")

    summary.count_writes(writer_thread.result)
    summary.aborted = writer_thread.fatal
    summary.failed = len(summary.failures)
    # Items never written because the writer gave up count as failed, not as lost.
    unaccounted = summary.seen - summary.tagged - summary.skipped - summary.failed
    if summary.aborted and unaccounted > 0:
        summary.failed += unaccounted
    summary.seconds = time.perf_counter() - started
    return summary


def _handle_batch(
    batch: Batch,
    todo: Sequence[SourceItem],
    models: _Models,
    fail: Callable[[Failure], None],
) -> list[ItemPredictions]:
    for bad in batch.failed:
        item = todo[bad.position]
        fail(Failure(item.item_id, item.uri, "decode", bad.reason))
    if not batch.decoded:
        return []
    try:
        predictions, failures = models.predict(batch)
    except Exception as error:
        predictions, failures = [], [(i, describe(error)) for i in range(len(batch.decoded))]
    failed_at = dict(failures)
    outputs: list[ItemPredictions] = []
    for i, decoded in enumerate(batch.decoded):
        item = todo[decoded.position]
        if i in failed_at:
            fail(Failure(item.item_id, item.uri, "predict", failed_at[i]))
            continue
        image_preds, object_preds, vector = predictions[i]
        if decoded.scale != (1.0, 1.0):
            _to_file_pixels(object_preds, decoded.scale)
        fields = item.fields()
        fields[f.WIDTH] = decoded.width
        fields[f.HEIGHT] = decoded.height
        if vector is not None:
            fields[f.EMBEDDING] = vector
        outputs.append(ItemPredictions(fields, image_preds, object_preds))
    return outputs


def _put(work: queue.Queue[Any], entry: object, writer_thread: _WriterThread) -> bool:
    """Queue ``entry`` for the writer, unless the writer has died (then False)."""
    while writer_thread.is_alive():
        try:
            work.put(entry, timeout=0.5)
            return True
        except queue.Full:
            continue
    return False


def _drain(work: queue.Queue[Any], fail: Callable[[Failure], None], reason: str) -> None:
    while True:
        try:
            entries = work.get_nowait()
        except queue.Empty:
            return
        if entries is _STOP:
            continue
        for entry in entries:
            fail(Failure(entry.item_id, str(entry.item.get(f.URI)), "write", reason))
