"""Image folders for benchmarks: synthetic scenes rendered once, hard-linked to any size."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from indexer.synthetic.world import render_scene


@dataclass(frozen=True)
class ImageFormat:
    width: int = 192
    height: int = 128
    suffix: str = "png"

    @classmethod
    def parse(cls, size: str, suffix: str) -> ImageFormat:
        width, _, height = size.lower().partition("x")
        return cls(int(width), int(height), suffix)

    def __str__(self) -> str:
        return f"{self.width}x{self.height}-{self.suffix}"


def make_dataset(
    root: Path, size: int, unique: int, fmt: ImageFormat = ImageFormat(), seed: int = 5
) -> Path:
    """A folder of ``size`` images: ``unique`` rendered scenes, hard-linked round-robin."""
    scenes = root / f"scenes-{seed}-{unique}-{fmt}"
    scenes.mkdir(parents=True, exist_ok=True)
    for index in range(unique):
        path = scenes / f"{index:06d}.{fmt.suffix}"
        if not path.exists():
            image, _ = render_scene(seed, index, size=(fmt.width, fmt.height))
            if fmt.suffix == "jpeg":
                image.save(path, quality=90)
            else:
                image.save(path)
    folder = root / f"data-{seed}-{unique}-{fmt}-{size}"
    if not folder.exists():
        partial = folder.with_suffix(".partial")
        partial.mkdir(parents=True, exist_ok=True)
        for index in range(size):
            target = partial / f"{index // 1000:03d}" / f"{index:07d}.{fmt.suffix}"
            target.parent.mkdir(exist_ok=True)
            if not target.exists():
                os.link(scenes / f"{index % unique:06d}.{fmt.suffix}", target)
        partial.rename(folder)
    return folder
