"""Stand-in taggers, an in-memory writer and image files for pipeline tests.

The stand-ins follow the interface of :class:`indexer.clip_tagger.ClipTagger` and
:class:`indexer.detector.ObjectDetector`; their outputs are a pure function of the image, so a
test can predict every score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from store.writer import ItemPredictions, WriteResult


@dataclass(frozen=True)
class StubDetection:
    label: str
    score: float
    bbox: tuple[float, float, float, float]


class StubClip:
    """Scores ``weather_clear`` by the red channel and ``weather_rain`` by the blue one."""

    model_name = "stub-clip"

    def __init__(self, fail_on_red: bool = False) -> None:
        self.fail_on_red = fail_on_red
        self.batches: list[int] = []

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return torch.tensor(image.resize((1, 1)).getpixel((0, 0)), dtype=torch.float32) / 255

    def predict(self, batch: torch.Tensor) -> list[list[tuple[str, float]]]:
        self.batches.append(len(batch))
        if self.fail_on_red and bool(((batch[:, 0] > 0.9) & (batch[:, 1] < 0.1)).any()):
            raise RuntimeError("red is bad")
        return [
            [("weather_clear", float(r) * 2 - 1), ("weather_rain", float(b) * 2 - 1)]
            for r, _, b in batch.tolist()
        ]


class StubDetector:
    """One ``car`` covering the whole image, scored by its green channel."""

    model_name = "stub-detector"

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)

    def predict(self, batch: list[torch.Tensor]) -> list[list[StubDetection]]:
        out = []
        for image in batch:
            _, height, width = image.shape
            green = float(image[1].float().mean()) / 255
            out.append([StubDetection("car", green, (0.0, 0.0, float(width), float(height)))])
        return out


def expected_clip(colour: tuple[int, int, int]) -> dict[str, float]:
    r, _, b = (c / 255 for c in colour)
    return {"weather_clear": r * 2 - 1, "weather_rain": b * 2 - 1}


class MemoryWriter:
    """The writer's contract without Elasticsearch: items by id, tagged by this training set."""

    def __init__(
        self,
        training_set: str = "ts1",
        *,
        force: bool = False,
        fail_ids: Sequence[str] = (),
        raise_always: bool = False,
    ) -> None:
        self.training_set = training_set
        self.force = force
        self.fail_ids = set(fail_ids)
        self.raise_always = raise_always
        self.items: dict[str, ItemPredictions] = {}
        self.writes: list[int] = []

    def already_tagged(self, item_ids: Sequence[str]) -> set[str]:
        return {i for i in item_ids if i in self.items}

    def write(self, batch: Sequence[ItemPredictions]) -> WriteResult:
        if self.raise_always:
            raise ConnectionError("cluster gone")
        self.writes.append(len(batch))
        result = WriteResult()
        for entry in batch:
            if entry.item_id in self.fail_ids:
                result.failed.append((entry.item_id, "mapping conflict"))
                continue
            if entry.item_id in self.items and not self.force:
                result.skipped += 1
                continue
            self.items[entry.item_id] = entry
            result.written += 1
            result.predictions += len(entry.image_predictions) + len(entry.object_predictions)
        return result


COLOURS: tuple[tuple[int, int, int], ...] = (
    (250, 10, 10),
    (10, 250, 10),
    (10, 10, 250),
    (128, 64, 32),
    (0, 0, 0),
    (255, 255, 255),
)


def write_images(folder: Path, count: int, *, size: tuple[int, int] = (16, 12)) -> list[Path]:
    """``count`` PNGs in ``folder`` (some in a subfolder), colours cycling through COLOURS."""
    paths = []
    for i in range(count):
        sub = folder / ("sub" if i % 3 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"img{i:03d}.png"
        Image.new("RGB", size, COLOURS[i % len(COLOURS)]).save(path)
        paths.append(path)
    return paths


def write_bad_files(folder: Path) -> dict[str, str]:
    """A truncated PNG, a text file named .png and a huge (by pixel count) PNG; name -> kind."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (1, 2, 3)).save(folder / "truncated.png")
    data = (folder / "truncated.png").read_bytes()
    (folder / "truncated.png").write_bytes(data[: len(data) // 2])
    (folder / "text.png").write_text("this is not an image")
    Image.new("L", (3000, 3000)).save(folder / "huge.png")
    return {"truncated.png": "decode", "text.png": "decode", "huge.png": "decode"}
