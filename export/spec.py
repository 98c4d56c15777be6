"""What an export is: its format, what it contains, how items are sampled; and the statement
(the manifest) every export carries about itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

MANIFEST_VERSION: Final = 1


class ExportFormat(StrEnum):
    JSONL = "jsonl"  # autotag's own import format, one item per line
    COCO = "coco"  # a bundle: annotations.json (COCO dataset) + results.json (COCO results)
    YOLO = "yolo"  # a bundle: images.txt, labels/*.txt, classes.txt, data.yaml

    @property
    def is_bundle(self) -> bool:
        """Several files: a ZIP (or, from the command line, a folder)."""
        return self is not ExportFormat.JSONL


class Content(StrEnum):
    """Which predictions an export holds (see ``export.content.CONTENT``)."""

    PREDICTIONS = "predictions"
    REVIEWED = "reviewed"


class Strategy(StrEnum):
    UNCERTAIN = "uncertain"  # the n items whose matched prediction is nearest the boundary (0)
    RANDOM = "random"  # n items drawn with a seed
    STRATIFIED = "stratified"  # n items per label of the matched predictions, drawn with a seed


class ScoreScale(StrEnum):
    """How COCO scores are written: as probabilities (2p - 1 = the stored score), COCO's and
    ``autotag import``'s default for COCO, or as stored."""

    PROBABILITY = "probability"
    SIGNED = "signed"


@dataclass(frozen=True, slots=True)
class Sampling:
    strategy: Strategy
    n: int
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        return {"strategy": self.strategy.value, "n": self.n, "seed": self.seed}


@dataclass(frozen=True, slots=True)
class ExportSpec:
    """One export: the query (canonical text, with the slices it used), format and content."""

    query: str
    format: ExportFormat
    content: Content = Content.PREDICTIONS
    training_set: str | None = None
    sampling: Sampling | None = None
    score_scale: ScoreScale = ScoreScale.PROBABILITY
    slices: dict[str, str] = field(default_factory=dict)

    def statement(self) -> dict[str, Any]:
        """What the export contains, known before it starts (headers, COCO ``info``)."""
        from export.content import CONTENT

        statement: dict[str, Any] = {
            "autotag_export": MANIFEST_VERSION,
            "format": self.format.value,
            "content": self.content.value,
            "content_means": CONTENT[self.content].meaning,
            "query": self.query,
            "slices": self.slices,
            "training_set": self.training_set,
            "sampling": None if self.sampling is None else self.sampling.describe(),
        }
        if self.format is ExportFormat.COCO:
            statement["score_scale"] = self.score_scale.value
        return statement
