"""Stage 1 of the ``index`` job: open, check, decode and preprocess images in DataLoader workers.

Whatever goes wrong with one image (not an image, truncated, too many pixels, a preprocess that
raises) becomes an :class:`Undecodable` for that position; a worker never raises for an image.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

import torch
from PIL import Image
from torch.utils.data import Dataset

DEFAULT_MAX_PIXELS: Final = 64_000_000


class Preprocessing(Protocol):
    """A model with a ``preprocess`` (and maybe a picklable ``preprocessor``)."""

    def preprocess(self, image: Image.Image) -> torch.Tensor: ...


class ImageTooLarge(ValueError):
    """An image whose pixel count is over the limit (a decompression bomb or a mistake)."""


def load_image(path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open, check and fully decode an image as RGB; raises on anything unusable."""
    return open_image(path, max_pixels=max_pixels).image


@dataclass(frozen=True)
class OpenedImage:
    """A decoded RGB image and the size of the file's image, which it may be smaller than."""

    image: Image.Image
    width: int
    height: int

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factors from the decoded image's pixels to the file's."""
        return self.width / self.image.width, self.height / self.image.height


def open_image(
    path: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int | None = None
) -> OpenedImage:
    """Open, check and fully decode an image as RGB; raises on anything unusable.

    With ``min_side``, a JPEG is decoded at a reduced scale (1/2, 1/4 or 1/8, done by the
    JPEG decoder itself and several times cheaper) as long as its shorter side stays at least
    ``min_side``: the models resize their input to that size anyway. Other formats decode in
    full.
    """
    with Image.open(path) as image:
        width, height = image.size
        if width <= 0 or height <= 0:
            raise ValueError(f"empty image ({width}x{height})")
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"image too large: {width}x{height} pixels (limit {max_pixels} pixels)"
            )
        if min_side is not None and image.format == "JPEG":
            image.draft("RGB", reduced_size(width, height, min_side))
        image.load()  # decode now: a truncated file fails here, not in a model
        return OpenedImage(image.convert("RGB"), width, height)


def reduced_size(width: int, height: int, min_side: int) -> tuple[int, int]:
    """The smallest size with the image's aspect whose shorter side is ``min_side`` (or more)."""
    shorter = min(width, height)
    if shorter <= min_side:
        return width, height
    factor = min_side / shorter
    return max(min_side, math.ceil(width * factor)), max(min_side, math.ceil(height * factor))


@dataclass(frozen=True)
class Decoded:
    position: int
    width: int
    height: int
    clip_input: torch.Tensor | None
    detector_input: torch.Tensor | None
    # From the decoded pixels (the models' inputs) to the file's pixels, per axis.
    scale: tuple[float, float] = (1.0, 1.0)


@dataclass(frozen=True)
class Undecodable:
    position: int
    reason: str


@dataclass(frozen=True)
class Batch:
    decoded: list[Decoded]
    failed: list[Undecodable]
    clip_inputs: torch.Tensor | None
    detector_inputs: list[torch.Tensor] | None


Preprocess = Callable[[Image.Image], torch.Tensor]


class ImageDataset(Dataset[Decoded | Undecodable]):
    """Position ``i`` of the to-do list: decoded and preprocessed, or the reason it is not."""

    def __init__(
        self,
        paths: Sequence[str],
        clip: Preprocess | None,
        detector: Preprocess | None,
        max_pixels: int,
        min_side: int | None = None,
    ) -> None:
        self.paths = list(paths)
        self.clip = clip
        self.detector = detector
        self.max_pixels = max_pixels
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int) -> Decoded | Undecodable:
        try:
            opened = open_image(
                Path(self.paths[position]), max_pixels=self.max_pixels, min_side=self.min_side
            )
            image = opened.image
            return Decoded(
                position=position,
                width=opened.width,
                height=opened.height,
                clip_input=self.clip(image) if self.clip else None,
                detector_input=self.detector(image) if self.detector else None,
                scale=opened.scale,
            )
        except Exception as error:  # any failure belongs to this item alone
            return Undecodable(position, describe(error))


def describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def collate(samples: list[Decoded | Undecodable]) -> Batch:
    decoded = [s for s in samples if isinstance(s, Decoded)]
    failed = [s for s in samples if isinstance(s, Undecodable)]
    shapes = Counter(tuple(s.clip_input.shape) for s in decoded if s.clip_input is not None)
    if len(shapes) > 1:  # a preprocess that does not resize: keep the batch's common shape
        common = shapes.most_common(1)[0][0]
        odd = [s for s in decoded if s.clip_input is not None and s.clip_input.shape != common]
        failed += [Undecodable(s.position, "preprocessed image has an odd shape") for s in odd]
        decoded = [s for s in decoded if s not in odd]
    clip = [s.clip_input for s in decoded if s.clip_input is not None]
    det = [s.detector_input for s in decoded if s.detector_input is not None]
    return Batch(
        decoded=decoded,
        failed=failed,
        clip_inputs=torch.stack(clip) if clip and len(clip) == len(decoded) else None,
        detector_inputs=det if det and len(det) == len(decoded) else None,
    )


def decode_min_side(*models: object) -> int | None:
    """The shorter side every given model still gets its full input from, if all say so.

    A model states it as ``input_min_side`` (the size it resizes its input to); when one of
    them does not, images are decoded in full.
    """
    sides: list[int] = []
    for model in models:
        if model is None:
            continue
        side = getattr(model, "input_min_side", None)
        if side is None:
            return None
        sides.append(int(side))
    return max(sides) if sides else None


def preprocessor_of(model: Preprocessing | None) -> Preprocess | None:
    """What the workers run: the model's picklable ``preprocessor`` if it has one."""
    if model is None:
        return None
    found: Preprocess = getattr(model, "preprocessor", model.preprocess)
    return found


def worker_init(_: int) -> None:
    # The models own the cores; a worker decodes one image at a time.
    torch.set_num_threads(1)
