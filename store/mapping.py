"""The Elasticsearch index schema for items, and the versioned-index-behind-an-alias scheme.

One document per item. Predictions live in two ``nested`` lists so that a query can demand that
*one and the same* prediction satisfies a label and a score condition. Only server-core field
types are used (keyword, float, date, nested, object, dense_vector), so the schema works on the
minimal Elasticsearch distribution as well as on any full cluster.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from store import schema as f

INDEX_ALIAS: Final = "autotag-items"
# Runs, their batches, training-set locks and per-dataset settings (store.runs).
RUNS_INDEX: Final = "autotag-runs"
# Bump when the mapping changes in a way that needs a new index; `autotag migrate`
# (store.migrate) then copies items across, deriving fields again. 2: the item's image
# `embedding`; 3: every prediction's `count_ranks` (store.schema).
SCHEMA_VERSION: Final = 3
# The mapping's _meta key holding the schema version an index was created with.
SCHEMA_VERSION_META: Final = "schema_version"
# How embeddings are indexed for approximate kNN, chosen by measurement (docs/benchmarks.md,
# "Embeddings: quantization"): recall against bytes per item at 512 dimensions. int8 vectors in
# the graph (a quarter of float's memory), the best candidates rescored with the float vectors
# Elasticsearch keeps anyway: recall@10 0.997 where plain int8 stops at 0.95.
EMBEDDING_INDEX_OPTIONS: Final = {"type": "int8_hnsw", "rescore_vector": {"oversample": 2.0}}


def versioned_index_name(alias: str = INDEX_ALIAS, version: int = SCHEMA_VERSION) -> str:
    """The concrete index behind ``alias`` for a schema version, e.g. ``autotag-items-v1``."""
    return f"{alias}-v{version}"


def _prediction_properties(*, with_bbox: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {
        f.PRED_ID: {"type": "keyword"},
        f.PRED_LABEL: {"type": "keyword"},
        f.PRED_LABEL_PREFIXES: {"type": "keyword"},
        f.PRED_SCORE: {"type": "float"},
        f.PRED_TRAINING_SET: {"type": "keyword"},
        f.PRED_STATUS: {"type": "keyword"},
        f.PRED_MODEL: {"type": "keyword"},
        f.PRED_CREATED_AT: {"type": "date"},
        f.PRED_ORIGINAL_LABEL: {"type": "keyword"},
        # Searched by term only: no doc values (a third of their size at 1M items).
        f.PRED_COUNT_RANKS: {"type": "keyword", "doc_values": False},
    }
    if with_bbox:
        # Pixel coordinates of the box corners.
        properties[f.PRED_BBOX] = {
            "properties": {side: {"type": "float"} for side in ("x1", "y1", "x2", "y2")}
        }
        # Derived from the box by store.documents; an index created before they existed
        # needs a put-mapping adding them (see docs/query-language.md, Box geometry).
        for name in f.BOX_GEOMETRY:
            properties[name] = {"type": "float"}
        # Kept for evaluation only (see store.schema); an older index needs a put-mapping.
        properties[f.PRED_ORIGINAL_BBOX] = {"type": "object", "enabled": False}
    return properties


def _truth_properties(*, with_bbox: bool) -> dict[str, Any]:
    """Ground-truth annotations (added after schema version 1: an index created before needs a
    put-mapping of these, see docs/evaluation.md)."""
    properties: dict[str, Any] = {
        f.PRED_ID: {"type": "keyword"},
        f.PRED_LABEL: {"type": "keyword"},
        f.PRED_LABEL_PREFIXES: {"type": "keyword"},
        f.ANNOTATION_SOURCE: {"type": "keyword"},
    }
    if with_bbox:
        properties[f.PRED_BBOX] = {
            "properties": {side: {"type": "float"} for side in ("x1", "y1", "x2", "y2")}
        }
        properties[f.ANNOTATION_CROWD] = {"type": "boolean"}
    return properties


def truth_mapping() -> dict[str, Any]:
    """The properties ground truth adds (an older index gets them from ``autotag update-mapping``
    or ``autotag import-truth``)."""
    return {
        f.TRUTH_SOURCE: {"type": "keyword"},
        f.TRUTH_IMAGES: {"type": "nested", "properties": _truth_properties(with_bbox=False)},
        f.TRUTH_OBJECTS: {"type": "nested", "properties": _truth_properties(with_bbox=True)},
        f.OBJECT_PREDICTIONS: {
            "type": "nested",
            "properties": {f.PRED_ORIGINAL_BBOX: {"type": "object", "enabled": False}},
        },
    }


def item_mapping() -> dict[str, Any]:
    """The ``mappings`` body: strict everywhere except under ``metadata``."""
    return {
        "dynamic": "strict",
        "_meta": {SCHEMA_VERSION_META: SCHEMA_VERSION},
        # Metadata strings stay strings: "2024-01-01" in metadata is not guessed to be a date.
        "date_detection": False,
        "properties": {
            f.ITEM_ID: {"type": "keyword"},
            f.DATASET: {"type": "keyword"},
            f.URI: {"type": "keyword"},
            f.WIDTH: {"type": "integer"},
            f.HEIGHT: {"type": "integer"},
            f.UPLOADED_AT: {"type": "date"},
            f.UPDATED_AT: {"type": "date"},
            f.AUTOTAG_STATUS: {"type": "keyword"},
            f.TAGGED_BY: {"type": "keyword"},
            f.METADATA: {
                "type": "object",
                "dynamic": True,
            },
            f.IMAGE_PREDICTIONS: {
                "type": "nested",
                "properties": _prediction_properties(with_bbox=False),
            },
            f.OBJECT_PREDICTIONS: {
                "type": "nested",
                "properties": _prediction_properties(with_bbox=True),
            },
            # Unit vectors compared by cosine; the dimension is set by the first vector written
            # (the model's), and the model is recorded in _meta (store.embeddings).
            f.EMBEDDING: {
                "type": "dense_vector",
                "similarity": "cosine",
                "index": True,
                "index_options": copy.deepcopy(EMBEDDING_INDEX_OPTIONS),
            },
            # Who changed what and when; kept for audit, never searched.
            f.REVIEW_HISTORY: {"type": "object", "enabled": False},
            # Imported ground truth, beside the predictions (store.schema).
            **{k: v for k, v in truth_mapping().items() if k != f.OBJECT_PREDICTIONS},
        },
        "dynamic_templates": [
            {
                "metadata_strings_as_keywords": {
                    "path_match": f"{f.METADATA}.*",
                    "match_mapping_type": "string",
                    # Matched exactly, not analysed as text.
                    "mapping": {"type": "keyword", "ignore_above": 1024},
                }
            }
        ],
    }


def index_settings(*, shards: int = 1, replicas: int = 0) -> dict[str, Any]:
    """Index-level settings for a new versioned index."""
    return {
        "number_of_shards": shards,
        "number_of_replicas": replicas,
        # Items carry up to a few dozen predictions; leave room for bigger ones.
        "mapping.nested_objects.limit": 20000,
        **INDEX_SORT,
        # Elasticsearch 9 leaves vectors out of _source unless a read asks for them; every
        # writer here rewrites whole documents it has read (the writer's merge, reviews), and
        # one that forgot to ask would silently drop the embedding. Kept in _source, they
        # survive any read-modify-write (cost: docs/benchmarks.md, bytes per item).
        "mapping.exclude_source_vectors": False,
    }


# Segments kept sorted by item id, the order of ``sort: item_id`` and every page's tiebreaker:
# such a page stops once it is full and its hits are counted (``track_total_hits``), instead of
# collecting every match. Set when an index is created; an older index works without it.
INDEX_SORT: Final[dict[str, list[str]]] = {
    "sort.field": [f.ITEM_ID],
    "sort.order": ["asc"],
}
