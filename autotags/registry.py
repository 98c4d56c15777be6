"""Where autotags and their versions are kept: one document per autotag in ``<index>-autotags``.

A version holds everything needed to score again or resume scoring: its training set name,
the examples it was fitted on, the linear model (weights and bias over the index's embeddings)
and how far scoring got. Updates use ``if_seq_no``/``if_primary_term``, so two writers never
overwrite each other's version.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

NAME_PATTERN: Final = re.compile(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")
NAME_HELP: Final = "lower-case letters and digits in words joined by `_`, e.g. `sun_glare`"
TRAINING_SET_PREFIX: Final = "autotag:"


class AutotagError(ValueError):
    """An autotag request that cannot be done; the message says why (a 4xx in the API)."""

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def registry_index(items_index: str) -> str:
    """The registry of the items index (or alias) ``items_index``."""
    return f"{items_index}-autotags"


def training_set_name(name: str, version: int) -> str:
    """``autotag:glare@2``: the training set a version's predictions are written under."""
    return f"{TRAINING_SET_PREFIX}{name}@{version}"


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name) or len(name) > 100:
        raise AutotagError(f"`{name}` is not an autotag name: {NAME_HELP}")
    return name


@dataclass
class Scoring:
    state: str = "pending"  # pending, running, done, failed
    total: int = 0
    scored: int = 0
    failed: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # per stage


@dataclass
class Version:
    version: int
    training_set: str
    created_at: str
    positives: list[str]
    negatives: list[str]
    random_negatives: int  # how many of the negatives were drawn at random
    weights: list[float]
    bias: float
    embedding_model: dict[str, Any]
    fit: dict[str, Any]
    scoring: Scoring = field(default_factory=Scoring)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Version:
        values = dict(data)
        values["scoring"] = Scoring(**values.get("scoring", {}))
        return cls(**values)


@dataclass
class Autotag:
    name: str
    created_at: str
    versions: list[Version] = field(default_factory=list)
    description: str | None = None
    # concurrency token of the stored document (not stored itself)
    seq_no: int | None = field(default=None, compare=False)
    primary_term: int | None = field(default=None, compare=False)

    @property
    def latest(self) -> Version:
        return self.versions[-1]

    def to_source(self) -> dict[str, Any]:
        data = asdict(self)
        del data["seq_no"], data["primary_term"]
        return data

    @classmethod
    def from_hit(cls, hit: dict[str, Any]) -> Autotag:
        source = dict(hit["_source"])
        versions = [Version.from_dict(v) for v in source.pop("versions", [])]
        return cls(
            **source,
            versions=versions,
            seq_no=hit.get("_seq_no"),
            primary_term=hit.get("_primary_term"),
        )


_MAPPING: Final = {
    "dynamic": False,
    "properties": {"name": {"type": "keyword"}, "created_at": {"type": "date"}},
}


class Registry:
    """The autotags of one items index."""

    def __init__(self, client: Elasticsearch, items_index: str) -> None:
        self.client = client
        self.items_index = items_index
        self.index = registry_index(items_index)

    def ensure(self) -> None:
        if not self.client.indices.exists(index=self.index):
            self.client.options(ignore_status=400).indices.create(
                index=self.index,
                mappings=_MAPPING,
                settings={"number_of_shards": 1, "number_of_replicas": 0},
            )

    def get(self, name: str) -> Autotag | None:
        try:
            hit = self.client.get(index=self.index, id=name)
        except NotFoundError:
            return None
        return Autotag.from_hit(dict(hit))

    def require(self, name: str) -> Autotag:
        found = self.get(name)
        if found is None:
            raise AutotagError(f"no autotag `{name}`", status=404)
        return found

    def all(self) -> Iterator[Autotag]:
        if not self.client.indices.exists(index=self.index):
            return
        response = self.client.search(
            index=self.index, size=1000, sort=[{"name": "asc"}], seq_no_primary_term=True
        )
        for hit in response["hits"]["hits"]:
            yield Autotag.from_hit(dict(hit))

    def create(self, autotag: Autotag) -> Autotag:
        self.ensure()
        try:
            written = self.client.create(
                index=self.index, id=autotag.name, document=autotag.to_source(), refresh=True
            )
        except ConflictError:
            raise AutotagError(f"autotag `{autotag.name}` exists: refine it", status=409) from None
        autotag.seq_no, autotag.primary_term = written["_seq_no"], written["_primary_term"]
        return autotag

    def save(self, autotag: Autotag) -> Autotag:
        """Write ``autotag`` back if nobody changed it since it was read (else 409)."""
        try:
            written = self.client.index(
                index=self.index,
                id=autotag.name,
                document=autotag.to_source(),
                if_seq_no=autotag.seq_no,
                if_primary_term=autotag.primary_term,
                refresh=True,
            )
        except ConflictError:
            raise AutotagError(
                f"autotag `{autotag.name}` was changed meanwhile; try again", status=409
            ) from None
        autotag.seq_no, autotag.primary_term = written["_seq_no"], written["_primary_term"]
        return autotag

    def delete(self, name: str) -> None:
        self.client.delete(index=self.index, id=name, refresh=True)
