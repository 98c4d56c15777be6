"""``store.migrate`` against a real node: nothing lost, resumable, abortable, atomic alias move."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from elasticsearch import ApiError, Elasticsearch

from cli.main import main
from indexer.sample import TRAINING_SETS, sample_items
from search import evaluate, parse, translate
from store import schema as f
from store.calls import drive
from store.documents import prepare_item
from store.mapping import SCHEMA_VERSION, index_settings, item_mapping, versioned_index_name
from store.migrate import MigrationError, abort, migrate, needs_migration, older_schema_op
from store.writer import PredictionWriter

pytestmark = pytest.mark.es


def v1_mapping() -> dict[str, Any]:
    """The mapping of schema version 1: today's, without what version 2 added."""
    mapping = item_mapping()
    del mapping["_meta"]
    del mapping["properties"][f.EMBEDDING]
    return mapping


@pytest.fixture
def alias(es: Elasticsearch) -> Iterator[str]:
    name = f"test-migrate-{uuid.uuid4().hex[:10]}"
    yield name
    for version in range(1, SCHEMA_VERSION + 1):
        es.indices.delete(index=versioned_index_name(name, version), ignore_unavailable=True)


def create_v1(es: Elasticsearch, alias: str, mapping: dict[str, Any] | None = None) -> str:
    index = versioned_index_name(alias, 1)
    es.indices.create(
        index=index,
        mappings=mapping or v1_mapping(),
        settings=index_settings(),
        aliases={alias: {"is_write_index": True}},
    )
    return index


def load_items(es: Elasticsearch, alias: str, count: int) -> None:
    """The sample (two training sets, some reviewed) through the writer, then review history
    and nested metadata on some items."""
    for training_set in TRAINING_SETS:
        writer = PredictionWriter(es, alias, training_set=training_set)
        result = writer.write(list(sample_items(count, training_set=training_set)))
        assert not result.failed
    es.indices.refresh(index=alias)
    for n in range(0, count, 5):
        item_id = f"sample-{n:05d}"
        doc = es.get(index=alias, id=item_id)["_source"]
        doc[f.REVIEW_HISTORY] = [
            {"at": "2025-02-01T00:00:00Z", "who": "alice", "action": "accept", "n": n}
        ]
        doc[f.METADATA] = {**doc.get(f.METADATA, {}), "rig": {"side": "left", "mount": n}}
        es.index(index=alias, id=item_id, document=prepare_item(doc))
    es.indices.refresh(index=alias)


def all_sources(es: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    es.indices.refresh(index=index)
    response = es.search(
        index=index, size=10_000, query={"match_all": {}}, source={"exclude_vectors": False}
    )
    return {hit["_id"]: hit["_source"] for hit in response["hits"]["hits"]}


def v2_mapping() -> dict[str, Any]:
    """The mapping of schema version 2: today's, without the predictions' ``count_ranks``."""
    mapping = item_mapping()
    del mapping["_meta"]
    for path in f.PREDICTION_PATHS:
        del mapping["properties"][path]["properties"][f.PRED_COUNT_RANKS]
    return mapping


def test_migration_derives_the_fields_the_new_version_derives(
    es: Elasticsearch, alias: str
) -> None:
    old = create_v1(es, alias, v2_mapping())
    rng = np.random.default_rng(3)
    documents = []
    for n in range(40):
        objects = [
            {
                f.PRED_ID: f"p{k}",
                f.PRED_LABEL: str(rng.choice(["car", "car_suv", "truck"])),
                f.PRED_SCORE: round(float(rng.uniform(-1, 1)), 2),
                f.PRED_TRAINING_SET: str(rng.choice(["model_v1", "model_v2"])),
                f.PRED_STATUS: str(rng.choice(["pending", "accepted", "rejected"])),
            }
            for k in range(int(rng.integers(0, 6)))
        ]
        documents.append(prepare_item({f.ITEM_ID: f"i{n}", f.OBJECT_PREDICTIONS: objects}))
    operations: list[dict[str, Any]] = []
    for document in documents:  # as a version 2 writer wrote them: no count_ranks
        stripped = {
            **document,
            f.OBJECT_PREDICTIONS: [
                {k: v for k, v in p.items() if k != f.PRED_COUNT_RANKS}
                for p in document[f.OBJECT_PREDICTIONS]
            ],
        }
        operations += [{"index": {"_index": old, "_id": document[f.ITEM_ID]}}, stripped]
    es.bulk(operations=operations, refresh=True)
    assert not any(f.PRED_COUNT_RANKS in str(doc) for doc in all_sources(es, old).values())
    assert drive(es, older_schema_op(alias)) == (old, 1)  # what the API warns about

    report = migrate(es, alias, batch=15)

    assert drive(es, older_schema_op(alias)) is None

    assert report.swapped
    assert report.copied == 40
    assert all_sources(es, alias) == {doc[f.ITEM_ID]: doc for doc in documents}
    for text in (
        "count(object_prefix:car AND score >= 0.2) >= 2",
        'count(object_prefix:car AND training_set = "model_v2") = 1',
        "count(object_prefix:car_suv OR object_prefix:truck) >= 3",
    ):
        tree = parse(text)
        expected = {doc[f.ITEM_ID] for doc in documents if evaluate(tree, doc)}
        found = es.search(index=alias, query=translate(tree), size=100, source=False)
        assert {hit["_id"] for hit in found["hits"]["hits"]} == expected, text
        assert 0 < len(expected) < 40, text


def test_migration_copies_everything_and_moves_the_alias(es: Elasticsearch, alias: str) -> None:
    old = create_v1(es, alias)
    load_items(es, alias, 60)
    before = all_sources(es, old)
    assert len(before) == 60
    assert needs_migration(es, alias)

    report = migrate(es, alias, batch=25)

    target = versioned_index_name(alias, SCHEMA_VERSION)
    assert report.swapped
    assert (report.copied, report.already_there) == (60, 0)
    assert list(es.indices.get_alias(name=alias)) == [target]
    assert es.indices.get_alias(name=alias)[target]["aliases"][alias]["is_write_index"]
    assert all_sources(es, alias) == before  # documents, predictions, reviews, metadata
    mapping = es.indices.get_mapping(index=target)[target]["mappings"]
    assert f.EMBEDDING in mapping["properties"]
    assert mapping["_meta"]["schema_version"] == SCHEMA_VERSION
    assert not needs_migration(es, alias)
    # The old index is kept, read-only; the alias writes to the new one.
    assert all_sources(es, old) == before
    with pytest.raises(ApiError):
        es.index(index=old, id="x", document={"item_id": "x"})
    es.index(index=alias, id="new", document=prepare_item({"item_id": "new"}), refresh=True)
    assert es.count(index=target)["count"] == 61
    # A second run has nothing to do.
    assert not migrate(es, alias).swapped


def test_an_interrupted_migration_resumes_where_it_stopped(es: Elasticsearch, alias: str) -> None:
    create_v1(es, alias)
    load_items(es, alias, 50)
    before = all_sources(es, alias)
    batches = []

    def stop_after_two(n: int) -> None:
        batches.append(n)
        if len(batches) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate(es, alias, batch=10, on_progress=stop_after_two)
    target = versioned_index_name(alias, SCHEMA_VERSION)
    assert list(es.indices.get_alias(name=alias)) == [versioned_index_name(alias, 1)]
    with pytest.raises(ApiError):  # still blocked: nothing can change behind the copy
        es.index(index=alias, id="x", document={"item_id": "x"})

    report = migrate(es, alias, batch=10)
    assert report.resumed
    assert report.swapped
    assert (report.already_there, report.copied) == (20, 30)
    assert list(es.indices.get_alias(name=alias)) == [target]
    assert all_sources(es, alias) == before


def test_abort_deletes_the_partial_copy_and_allows_writes(es: Elasticsearch, alias: str) -> None:
    old = create_v1(es, alias)
    load_items(es, alias, 20)

    def stop(_: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        migrate(es, alias, batch=5, on_progress=stop)
    abort(es, alias)
    assert not es.indices.exists(index=versioned_index_name(alias, SCHEMA_VERSION))
    es.index(index=alias, id="after", document=prepare_item({"item_id": "after"}), refresh=True)
    assert es.count(index=old)["count"] == 21


def test_vectors_left_out_of_source_are_copied_too(es: Elasticsearch, alias: str) -> None:
    # An index of an older version that already had vectors, stored the way Elasticsearch 9
    # does by default (rebuilt on read, not kept in _source): the copy must ask for them.
    mapping = item_mapping()
    mapping["_meta"] = {
        "schema_version": 1,
        "embedding_model": {"name": "m", "weights_sha256": "ab", "dims": 8},
    }
    old = versioned_index_name(alias, 1)
    settings = {**index_settings(), "mapping.exclude_source_vectors": True}
    es.indices.create(index=old, mappings=mapping, settings=settings, aliases={alias: {}})
    rng = np.random.default_rng(3)
    vectors = {f"v{n}": rng.standard_normal(8).astype(np.float32) for n in range(12)}
    for item_id, vector in vectors.items():
        doc = prepare_item({"item_id": item_id, f.EMBEDDING: (vector / np.linalg.norm(vector))})
        es.index(index=old, id=item_id, document=doc)
    es.index(index=old, id="none", document=prepare_item({"item_id": "none"}), refresh=True)
    assert f.EMBEDDING not in es.get(index=old, id="v0")["_source"]

    migrate(es, alias)
    copied = all_sources(es, alias)
    assert len(copied) == 13
    assert f.EMBEDDING not in copied["none"]
    for item_id, vector in vectors.items():
        stored = np.asarray(copied[item_id][f.EMBEDDING], dtype=np.float32)
        np.testing.assert_allclose(stored, vector / np.linalg.norm(vector), rtol=1e-6)
    # The model record travels with the embeddings.
    target = versioned_index_name(alias, SCHEMA_VERSION)
    meta = es.indices.get_mapping(index=target)[target]["mappings"]["_meta"]
    assert meta["embedding_model"]["name"] == "m"
    assert meta["schema_version"] == SCHEMA_VERSION


def test_an_index_that_is_not_behind_an_alias_is_refused(
    es: Elasticsearch, item_index: str
) -> None:
    with pytest.raises(MigrationError, match="not an alias"):
        migrate(es, item_index)


def test_the_command(
    es: Elasticsearch,
    es_url: str,
    alias: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_v1(es, alias)
    load_items(es, alias, 10)
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    assert main(["migrate", "--index", alias, "--no-progress", "--delete-old"]) == 0
    out = capsys.readouterr().out
    assert f"{alias} -> {versioned_index_name(alias, SCHEMA_VERSION)}: 10 items" in out
    assert not es.indices.exists(index=versioned_index_name(alias, 1))
    assert main(["migrate", "--index", alias, "--no-progress"]) == 0
    assert "up to date" in capsys.readouterr().out
