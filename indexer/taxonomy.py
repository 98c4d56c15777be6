"""The taxonomy: which image tags and object classes autotag predicts, and how to prompt for them.

Loaded from a TOML file (see ``default_taxonomy.toml``, the shipped default). Image tags come in
mutually exclusive groups or as independent tags; each tag carries its prompt ensemble (templates
x phrases, expanded here once). Object classes map detector labels to taxonomy labels.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

DEFAULT_TAXONOMY_PATH = Path(__file__).with_name("default_taxonomy.toml")

_LABEL_RE = re.compile(r"^[a-z0-9]+(_[a-z0-9]+)*$")
_NOT_LABEL_CHARS = re.compile(r"[^a-z0-9]+")


def normalise_label(name: str) -> str:
    """A label as autotag stores it: lower-case, every run of characters other than ASCII letters
    and digits turned into one ``_``, leading and trailing ``_`` trimmed.

    ``"traffic light"`` -> ``"traffic_light"``, ``"Stop-Sign "`` -> ``"stop_sign"``. The result
    is ``""`` or matches the taxonomy's own label rule; labels that are already taxonomy labels
    are unchanged. The one rule for every label that enters from outside (``autotag import``).
    """
    return _NOT_LABEL_CHARS.sub("_", name.lower()).strip("_")


class TaxonomyError(ValueError):
    """A taxonomy file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class ImageTag:
    """An image-level tag and the prompts (already expanded) that describe it."""

    label: str
    prompts: tuple[str, ...]


@dataclass(frozen=True)
class TagGroup:
    """Mutually exclusive tags: exactly one of them applies to an image."""

    name: str
    tags: tuple[ImageTag, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(tag.label for tag in self.tags)


@dataclass(frozen=True)
class Taxonomy:
    """Image tags (groups and independent tags) and the detector label map."""

    groups: tuple[TagGroup, ...]
    independent_tags: tuple[ImageTag, ...]
    object_classes: Mapping[str, str]
    neutral_prompts: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    @property
    def image_tags(self) -> tuple[ImageTag, ...]:
        """Every image tag, groups first, in file order (the order of tagger outputs)."""
        return (*(tag for group in self.groups for tag in group.tags), *self.independent_tags)

    @property
    def image_labels(self) -> tuple[str, ...]:
        return tuple(tag.label for tag in self.image_tags)

    @property
    def object_labels(self) -> tuple[str, ...]:
        """The distinct taxonomy labels of object classes, sorted."""
        return tuple(sorted(set(self.object_classes.values())))

    def group_of(self, label: str) -> TagGroup | None:
        """The group holding image tag ``label``, or None for an independent tag."""
        return next((g for g in self.groups if label in g.labels), None)

    def fingerprint(self) -> str:
        """A hex digest of everything that changes predictions (not the source path)."""
        canonical = {
            "groups": [
                {"name": g.name, "tags": [[t.label, list(t.prompts)] for t in g.tags]}
                for g in self.groups
            ],
            "independent_tags": [[t.label, list(t.prompts)] for t in self.independent_tags],
            "neutral_prompts": list(self.neutral_prompts),
            "object_classes": sorted(self.object_classes.items()),
        }
        blob = json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    """Read and validate a taxonomy TOML file; ``None`` loads the shipped default."""
    source = Path(path) if path is not None else DEFAULT_TAXONOMY_PATH
    try:
        raw = tomllib.loads(source.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TaxonomyError(f"{source}: cannot read taxonomy: {exc}") from exc
    try:
        return parse_taxonomy(raw, source=str(source))
    except TaxonomyError as exc:
        raise TaxonomyError(f"{source}: {exc}") from exc


def parse_taxonomy(raw: Mapping[str, Any], *, source: str = "") -> Taxonomy:
    """Build a :class:`Taxonomy` from the parsed TOML structure."""
    templates = _strings(raw.get("templates", ["{}"]), "templates")
    groups = tuple(_group(g, templates) for g in _tables(raw.get("groups", []), "groups"))
    independent = tuple(
        _tag(t, templates) for t in _tables(raw.get("independent_tags", []), "independent_tags")
    )
    neutral = (
        _strings(raw["neutral_prompts"], "neutral_prompts") if "neutral_prompts" in raw else ()
    )
    if independent and not neutral:
        raise TaxonomyError("independent tags need `neutral_prompts` to be scored against")
    object_classes = raw.get("object_classes", {})
    if not isinstance(object_classes, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in object_classes.items()
    ):
        raise TaxonomyError("`object_classes` must map detector labels to taxonomy labels")
    for target in object_classes.values():
        _check_label(target)
    labels = [t.label for g in groups for t in g.tags] + [t.label for t in independent]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise TaxonomyError(f"image tag labels defined more than once: {duplicates}")
    return Taxonomy(
        groups=groups,
        independent_tags=independent,
        object_classes=MappingProxyType(dict(object_classes)),
        neutral_prompts=neutral,
        source=source,
    )


def _group(raw: Mapping[str, Any], templates: tuple[str, ...]) -> TagGroup:
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise TaxonomyError("every group needs a `name`")
    own = _strings(raw["templates"], f"{name}.templates") if "templates" in raw else templates
    tags = tuple(_tag(t, own) for t in _tables(raw.get("tags", []), f"{name}.tags"))
    if len(tags) < 2:
        raise TaxonomyError(f"group {name!r} needs at least two tags")
    return TagGroup(name=name, tags=tags)


def _tag(raw: Mapping[str, Any], templates: tuple[str, ...]) -> ImageTag:
    label = raw.get("label")
    if not isinstance(label, str):
        raise TaxonomyError("every tag needs a `label`")
    _check_label(label)
    own = _strings(raw["templates"], f"{label}.templates") if "templates" in raw else templates
    phrases = _strings(raw.get("phrases", [label.replace("_", " ")]), f"{label}.phrases")
    prompts = tuple(template.format(phrase) for template in own for phrase in phrases)
    return ImageTag(label=label, prompts=prompts)


def _check_label(label: str) -> None:
    if not _LABEL_RE.match(label):
        raise TaxonomyError(f"label {label!r} must be lower-case words joined by `_`")


def _tables(value: object, what: str) -> list[Mapping[str, Any]]:
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise TaxonomyError(f"`{what}` must be an array of tables")
    return value


def _strings(value: object, what: str) -> tuple[str, ...]:
    if (
        not isinstance(value, Sequence)
        or isinstance(value, str)
        or not value
        or not all(isinstance(v, str) and v for v in value)
    ):
        raise TaxonomyError(f"`{what}` must be a non-empty list of strings")
    if what.endswith("templates") and not all("{}" in v for v in value):
        raise TaxonomyError(f"every template in `{what}` needs a `{{}}` placeholder")
    return tuple(value)
