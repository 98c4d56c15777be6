"""Which models a run tags with: the model catalogue, and whether its weights can be had here.

A run names a *model set* from the catalogue: ``demo`` (built in: the shipped tiny CLIP model and
detector, which know only the synthetic driving world), or an entry of the TOML file named by
``AUTOTAG_MODELS_FILE``::

    [vitb32]
    clip_model = "ViT-B-32"
    clip_weights = "/models/open_clip_pytorch_model.bin"
    detector_weights = "torchvision:fasterrcnn_resnet50_fpn_v2:/models/fasterrcnn.pth"
    score_threshold = 0.5            # detections kept from this score (default 0.5)

The weight specifications are those of ``autotag index`` (``--clip-model``, ``--clip-weights``,
``--detector-weights``); leaving one out skips that model. The API checks a choice when a run
is submitted, without loading torch: the name must be in the catalogue and every file it names
must exist. A catalogue names files, not pretrained tags that would need a download at run time
(``laion2b_s34b_b79k``, ``torchvision:ARCH`` without a file): those are refused at submission,
not failed an hour later. The worker stores what was checked on the run (:meth:`ModelSet.to_doc`)
and loads exactly that (``indexer.model_set``).
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Final

DEMO: Final = "demo"
# The prefixes and suffixes of the weight specifications (indexer.clip_tagger, indexer.detector).
LOCAL_DIR_PREFIX: Final = "local-dir:"
RANDOM_WEIGHTS: Final = "random"
CHECKPOINT_SUFFIXES: Final = (".safetensors", ".bin", ".pt", ".pth")


class CatalogueError(ValueError):
    """The models file cannot be read or one of its entries is malformed."""


@dataclass(frozen=True)
class ModelSet:
    """One catalogue entry: the CLIP tagger and the detector to run (either may be absent)."""

    name: str
    clip_model: str | None = None
    clip_weights: str | None = None
    detector_weights: str | None = None
    score_threshold: float = 0.5
    # The shipped tiny models (their predictions' model names start with ``demo:``).
    demo: bool = False

    def to_doc(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ModelSet:
        known = {spec.name for spec in fields(cls)}
        return cls(**{k: v for k, v in doc.items() if k in known})

    def describe(self) -> str:
        if self.demo:
            return "the shipped tiny demo models (synthetic driving scenes only)"
        parts = []
        if self.clip_weights:
            parts.append(f"CLIP {self.clip_model or ''} {self.clip_weights}".replace("  ", " "))
        if self.detector_weights:
            parts.append(f"detector {self.detector_weights}")
        return ", ".join(parts)


DEMO_SET: Final = ModelSet(name=DEMO, demo=True)
_ENTRY_KEYS: Final = ("clip_model", "clip_weights", "detector_weights", "score_threshold")


def load_catalogue(path: Path | None) -> dict[str, ModelSet]:
    """``demo`` and the entries of the models file ``path`` (none when ``path`` is None)."""
    catalogue = {DEMO: DEMO_SET}
    if path is None:
        return catalogue
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise CatalogueError(f"models file {path}: {error}") from error
    for name, entry in data.items():
        if name == DEMO:
            raise CatalogueError(f"models file {path}: [{DEMO}] is built in; choose another name")
        if not isinstance(entry, dict):
            raise CatalogueError(f"models file {path}: {name} is not a [table]")
        unknown = sorted(set(entry) - set(_ENTRY_KEYS))
        if unknown:
            raise CatalogueError(
                f"models file {path}: [{name}] has unknown keys {unknown} (known: {_ENTRY_KEYS})"
            )
        texts: dict[str, str | None] = {k: entry.get(k) for k in _ENTRY_KEYS[:3]}
        if any(v is not None and not isinstance(v, str) for v in texts.values()):
            raise CatalogueError(f"models file {path}: [{name}] weights must be strings")
        threshold = entry.get("score_threshold", 0.5)
        if not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
            raise CatalogueError(f"models file {path}: [{name}] score_threshold is not in [0, 1]")
        if not texts["clip_weights"] and not texts["detector_weights"]:
            raise CatalogueError(
                f"models file {path}: [{name}] names neither clip_weights nor detector_weights"
            )
        catalogue[name] = ModelSet(
            name=name,
            clip_model=texts["clip_model"],
            clip_weights=texts["clip_weights"],
            detector_weights=texts["detector_weights"],
            score_threshold=float(threshold),
        )
    return catalogue


class UnknownModelsError(LookupError):
    """A model-set name the catalogue does not have."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        self.closest = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
        hint = (
            f"; did you mean {' or '.join(repr(c) for c in self.closest)}?" if self.closest else ""
        )
        super().__init__(f"unknown models {name!r} (known: {', '.join(known)}){hint}")


def choose(catalogue: Mapping[str, ModelSet], name: str) -> ModelSet:
    """The catalogue's entry ``name``; :class:`UnknownModelsError` when it has none."""
    found = catalogue.get(name)
    if found is None:
        raise UnknownModelsError(name, sorted(catalogue))
    return found


def weight_problems(models: ModelSet) -> list[str]:
    """Why ``models`` cannot be loaded on this machine (empty when every file is there)."""
    if models.demo:
        return []
    problems = []
    if models.clip_weights:
        problems += _clip_problems(models.clip_model, models.clip_weights)
    if models.detector_weights:
        problems += _detector_problems(models.detector_weights)
    return problems


def _clip_problems(architecture: str | None, weights: str) -> list[str]:
    if weights.startswith(LOCAL_DIR_PREFIX):
        folder = Path(weights.removeprefix(LOCAL_DIR_PREFIX)).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            return [f"CLIP weights {weights}: no open_clip_config.json in {folder}"]
        if not any(p.suffix in CHECKPOINT_SUFFIXES for p in folder.iterdir()):
            return [f"CLIP weights {weights}: no weights file in {folder}"]
        return []
    if not architecture:
        return [f"CLIP weights {weights}: clip_model (the open_clip architecture) is missing"]
    if weights == RANDOM_WEIGHTS:
        return []
    path = Path(weights).expanduser()
    if path.is_file():
        return []
    if path.suffix in CHECKPOINT_SUFFIXES or "/" in weights:
        return [f"CLIP weights file not found: {path}"]
    return [
        f"CLIP weights {weights!r} is a pretrained tag, which would need a download when the run "
        "starts; name the checkpoint file (or local-dir:FOLDER) instead"
    ]


def _detector_problems(weights: str) -> list[str]:
    if weights.startswith("random:"):
        return []
    if weights.startswith("torchvision:"):
        arch, _, file = weights.removeprefix("torchvision:").partition(":")
        if not file:
            return [
                f"detector weights {weights} would need a download when the run starts; name "
                f"the checkpoint file: torchvision:{arch}:FILE"
            ]
        path = Path(file).expanduser()
        return [] if path.is_file() else [f"detector weights file not found: {path}"]
    path = Path(weights).expanduser()
    if path.suffix != ".safetensors":
        return [
            f"detector weights {weights!r}: expected torchvision:ARCH:FILE, random:ARCH or "
            "FILE.safetensors with FILE.json"
        ]
    missing = [p for p in (path, path.with_suffix(".json")) if not p.is_file()]
    return [f"detector weights file not found: {p}" for p in missing]
