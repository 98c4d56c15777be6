"""Image embeddings in the index: which model made them, and writing them without touching the rest.

An index holds the embeddings of exactly one model, recorded in its mapping's ``_meta`` under
:data:`META_KEY` (name, weights hash, dimension). Similarity compares a query's vector with the
stored ones, so a vector from another model (or another checkpoint of the same architecture)
would give meaningless answers: the indexer records the model before writing the first
embedding and refuses a different one, and the API refuses to embed a query with a model that
is not the index's.

:func:`write_embeddings` sets the embedding of existing items through partial updates (bulk
``update`` with ``doc``): predictions, review states and history are neither read nor written,
so it runs safely next to reviews and indexing runs (each update is applied atomically by
Elasticsearch on the current version of the document).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from elasticsearch import Elasticsearch

from store import schema as f
from store.mapping import SCHEMA_VERSION_META

META_KEY: Final = "embedding_model"


@dataclass(frozen=True)
class EmbeddingModel:
    """The model that made an index's embeddings."""

    name: str  # as recorded on predictions, e.g. "open_clip:ViT-B-32@1a2b3c4d"
    weights_sha256: str
    dims: int

    def to_meta(self) -> dict[str, Any]:
        return {"name": self.name, "weights_sha256": self.weights_sha256, "dims": self.dims}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any] | None) -> EmbeddingModel | None:
        entry = (meta or {}).get(META_KEY)
        if not isinstance(entry, Mapping):
            return None
        return cls(str(entry["name"]), str(entry["weights_sha256"]), int(entry["dims"]))

    def same_model(self, other: EmbeddingModel) -> bool:
        """Same weights and dimension (the display name may differ, e.g. a demo prefix)."""
        return (self.weights_sha256, self.dims) == (other.weights_sha256, other.dims)


class EmbeddingModelMismatch(ValueError):
    """Embeddings of one model were about to be mixed with another model's in one index."""


def index_meta(mappings_response: Mapping[str, Any]) -> dict[str, Any]:
    """The ``_meta`` of the (single) index in a get-mapping response body."""
    for body in mappings_response.values():
        meta = body.get("mappings", {}).get("_meta")
        return dict(meta) if isinstance(meta, Mapping) else {}
    return {}


def has_embedding_field(mappings_response: Mapping[str, Any]) -> bool:
    """Whether the index's mapping has the ``embedding`` field (schema version 2 and later)."""
    for body in mappings_response.values():
        return f.EMBEDDING in body.get("mappings", {}).get("properties", {})
    return False


def schema_version(mappings_response: Mapping[str, Any], index_name: str) -> int:
    """The index's schema version: from ``_meta``, else its ``-vN`` name, else 1."""
    meta = index_meta(mappings_response)
    if isinstance(meta.get(SCHEMA_VERSION_META), int):
        return int(meta[SCHEMA_VERSION_META])
    head, sep, tail = index_name.rpartition("-v")
    return int(tail) if sep and head and tail.isdigit() else 1


def read_embedding_model(client: Elasticsearch, index: str) -> EmbeddingModel | None:
    """The model recorded on ``index`` (an index or an alias), if any."""
    return EmbeddingModel.from_meta(index_meta(client.indices.get_mapping(index=index).body))


def record_embedding_model(client: Elasticsearch, index: str, model: EmbeddingModel) -> None:
    """Make ``model`` the index's embedding model, or raise :class:`EmbeddingModelMismatch`.

    Other ``_meta`` keys are kept. Raises ``ValueError`` when the index has no embedding field
    (an index created before schema version 2: ``autotag migrate`` copies it to one that has).
    """
    response = client.indices.get_mapping(index=index).body
    if not has_embedding_field(response):
        raise ValueError(
            f"index {index!r} has no `{f.EMBEDDING}` field (it predates schema version 2); "
            "run `autotag migrate` to copy it to the current schema"
        )
    meta = index_meta(response)
    recorded = EmbeddingModel.from_meta(meta)
    if recorded is not None:
        if not recorded.same_model(model):
            raise EmbeddingModelMismatch(
                f"index {index!r} holds embeddings of {recorded.name} "
                f"(weights {recorded.weights_sha256[:12]}, {recorded.dims} dims); this model is "
                f"{model.name} (weights {model.weights_sha256[:12]}, {model.dims} dims). One "
                "index holds one model's embeddings: use the same model, or another index"
            )
        return
    meta[META_KEY] = model.to_meta()
    for name in response:  # the concrete index behind an alias
        client.indices.put_mapping(index=name, meta=meta)


Vector = Sequence[float] | npt.NDArray[np.float32]


def as_stored_vector(vector: Vector) -> npt.NDArray[np.float32]:
    """A float32 unit vector, as the index stores and compares it (cosine)."""
    array = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(array))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("an embedding must be a finite, non-zero vector")
    return array / norm


@dataclass
class EmbeddingWrites:
    written: int = 0
    missing: int = 0  # items deleted since they were listed
    failed: list[tuple[str, str]] = field(default_factory=list)


def write_embeddings(
    client: Elasticsearch,
    index: str,
    vectors: Mapping[str, Vector],
    *,
    refresh: bool = False,
) -> EmbeddingWrites:
    """Set ``embedding`` on existing items (partial updates; nothing else is touched)."""
    result = EmbeddingWrites()
    if not vectors:
        return result
    operations: list[Mapping[str, Any]] = []
    for item_id, vector in vectors.items():
        operations.append({"update": {"_index": index, "_id": item_id, "retry_on_conflict": 5}})
        operations.append({"doc": {f.EMBEDDING: as_stored_vector(vector)}})
    response = client.bulk(
        operations=operations,
        refresh="wait_for" if refresh else False,
        filter_path=["items.*._id", "items.*.status", "items.*.error.reason"],
    )
    for outcome in response["items"]:
        status = next(iter(outcome.values()))
        code = int(status.get("status", 500))
        if code < 300:
            result.written += 1
        elif code == 404:
            result.missing += 1
        else:
            reason = status.get("error", {}).get("reason", f"status {code}")
            result.failed.append((str(status.get("_id")), str(reason)))
    return result
