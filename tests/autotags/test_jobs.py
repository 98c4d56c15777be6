"""Autotag jobs against a real node: create, score (resumable, idempotent, partial writes that
leave everything else alone), refine from reviews, delete, and the refusals."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from elasticsearch import Elasticsearch

from api.models import ReviewAction
from api.review import apply_review
from autotags import jobs
from autotags.registry import AutotagError, Registry
from autotags.training import Examples
from embeddings.clip import ClipEncoder
from indexer.models import TINY_CLIP
from store import schema as f
from store.documents import prepare_item
from store.embeddings import record_embedding_model
from store.mapping import index_settings, item_mapping
from tests.embedded_world import scene_items

torch.set_num_threads(min(2, torch.get_num_threads()))
pytestmark = pytest.mark.es
SCENES = 120


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return ClipEncoder("", TINY_CLIP)


@pytest.fixture
def world(es: Elasticsearch, encoder: ClipEncoder) -> Iterator[tuple[str, dict[str, Any]]]:
    index = f"test-autotags-{uuid.uuid4().hex[:10]}"
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    record_embedding_model(es, index, encoder.identity())
    items, truth = scene_items(encoder, SCENES, 99)
    items.append(prepare_item({"item_id": "no-image", "image_predictions": [
        {"id": "x", "label": "weather_fog", "score": 0.2}]}))  # fmt: skip
    operations: list[dict[str, Any]] = []
    for item in items:
        operations += [{"index": {"_index": index, "_id": item["item_id"]}}, item]
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    yield index, truth
    es.indices.delete(index=[index, f"{index}-autotags"], ignore_unavailable=True)


def sources(es: Elasticsearch, index: str) -> dict[str, dict[str, Any]]:
    es.indices.refresh(index=index)
    hits = es.search(index=index, size=1000, source={"exclude_vectors": False})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def autotag_predictions(source: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return [
        p
        for p in source.get(f.IMAGE_PREDICTIONS, [])
        if str(p.get("training_set")).startswith(f"autotag:{name}@")
    ]


def glare_ids(truth: dict[str, Any], n: int) -> list[str]:
    return [item_id for item_id, scene in truth.items() if "glare" in scene.tags][:n]


def test_create_scores_every_item_with_an_embedding_and_nothing_else(
    es: Elasticsearch, world: tuple[str, dict[str, Any]]
) -> None:
    index, truth = world
    before = sources(es, index)
    positives = glare_ids(truth, 8)
    autotag = jobs.create(es, index, "sun_glare", Examples(tuple(positives)), seed=1)
    version = autotag.latest
    assert version.training_set == "autotag:sun_glare@1"
    assert (version.scoring.state, version.scoring.scored) == ("done", SCENES)
    assert len(version.positives) == 8
    assert version.random_negatives == len(version.negatives) >= 100
    assert set(version.scoring.seconds) == {"read", "score", "write"}
    after = sources(es, index)
    for item_id, source in after.items():
        mine = autotag_predictions(source, "sun_glare")
        if item_id == "no-image":
            assert mine == []
            continue
        (prediction,) = mine
        assert prediction["label"] == "sun_glare"
        assert -1 <= prediction["score"] <= 1
        assert prediction["status"] == "pending"
        # Everything else as it was: other predictions, reviews, the embedding.
        rest = {**source, f.IMAGE_PREDICTIONS: [p for p in source[f.IMAGE_PREDICTIONS]
                                                 if p not in mine]}  # fmt: skip
        old = before[item_id]
        for key in (f.EMBEDDING, f.OBJECT_PREDICTIONS, f.IMAGE_PREDICTIONS, f.DATASET):
            assert rest[key] == old[key], (item_id, key)
        assert "autotag:sun_glare@1" in source[f.TAGGED_BY]
    scores = {i: autotag_predictions(s, "sun_glare") for i, s in after.items()}
    glare = [scores[i][0]["score"] for i, t in truth.items() if "glare" in t.tags]
    other = [scores[i][0]["score"] for i, t in truth.items() if "glare" not in t.tags]
    assert min(glare) > max(sorted(other)[: len(other) // 2])  # separates well on this world
    # Scoring again has nothing to do; creating again is refused.
    assert jobs.score(es, index, "sun_glare").scoring.scored == SCENES
    with pytest.raises(AutotagError, match="exists"):
        jobs.create(es, index, "sun_glare", Examples(tuple(positives)))


def test_scoring_resumes_after_a_stop(es: Elasticsearch, world: tuple[str, dict[str, Any]]) -> None:
    index, truth = world
    jobs.create(es, index, "glare", Examples(tuple(glare_ids(truth, 5))), run_scoring=False)

    def stop(done: int, total: int) -> None:
        if done >= 40:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        jobs.score(es, index, "glare", batch=20, progress=stop)
    stopped = Registry(es, index).require("glare").latest.scoring
    assert (stopped.state, stopped.scored) == ("failed", 40)
    version = jobs.score(es, index, "glare", batch=20)
    assert (version.scoring.state, version.scoring.scored) == ("done", SCENES)
    counts = [len(autotag_predictions(s, "glare")) for i, s in sources(es, index).items()]
    assert sorted(set(counts)) == [0, 1]  # each item scored once, the one without image never
    assert sum(counts) == SCENES


def test_a_review_during_scoring_is_kept(
    es: Elasticsearch, world: tuple[str, dict[str, Any]]
) -> None:
    """Scoring writes back items it read from a point in time: one reviewed since must not lose
    its review (its write conflicts; the writer re-reads and merges)."""
    index, truth = world
    jobs.create(es, index, "glare", Examples(tuple(glare_ids(truth, 5))), run_scoring=False)
    unscored = {
        "bool": {
            "filter": [{"exists": {"field": f.EMBEDDING}}],
            "must_not": [{"term": {f.TAGGED_BY: "autotag:glare@1"}}],
        }
    }
    reviewed: list[tuple[str, str]] = []

    def review_the_last_item(done: int, total: int) -> None:
        if done != 20:  # after the first batch: the job has opened its point in time
            return
        es.indices.refresh(index=index)
        (hit,) = es.search(index=index, size=1, sort=[{f.ITEM_ID: "desc"}], query=unscored)["hits"][
            "hits"
        ]
        stored = es.get(index=index, id=hit["_id"])
        first = stored["_source"][f.IMAGE_PREDICTIONS][0]
        item, _ = apply_review(
            stored["_source"], first["id"], ReviewAction.REJECT, who="test", api_key="test"
        )
        es.index(
            index=index,
            id=hit["_id"],
            document=item,
            if_seq_no=stored["_seq_no"],
            if_primary_term=stored["_primary_term"],
            refresh=True,
        )
        reviewed.append((hit["_id"], first["id"]))

    version = jobs.score(es, index, "glare", batch=20, progress=review_the_last_item)
    assert (version.scoring.state, version.scoring.scored) == ("done", SCENES)
    ((item_id, prediction_id),) = reviewed
    source = sources(es, index)[item_id]
    statuses = {p["id"]: p["status"] for p in source[f.IMAGE_PREDICTIONS]}
    assert statuses[prediction_id] == "rejected"
    assert [entry["prediction_id"] for entry in source[f.REVIEW_HISTORY]] == [prediction_id]
    assert len(autotag_predictions(source, "glare")) == 1
    assert len(source[f.EMBEDDING]) == len(sources(es, index)["scene-0001"][f.EMBEDDING])


def review(es: Elasticsearch, index: str, item_id: str, action: ReviewAction) -> None:
    stored = es.get(index=index, id=item_id)
    (prediction,) = autotag_predictions(stored["_source"], "glare")
    item, _ = apply_review(stored["_source"], prediction["id"], action, who="test", api_key="test")
    es.index(
        index=index,
        id=item_id,
        document=item,
        if_seq_no=stored["_seq_no"],
        if_primary_term=stored["_primary_term"],
        refresh=True,
    )


def test_refine_turns_reviews_into_examples_and_keeps_older_versions(
    es: Elasticsearch, world: tuple[str, dict[str, Any]]
) -> None:
    index, truth = world
    with pytest.raises(AutotagError, match="no autotag"):
        jobs.refine(es, index, "glare")
    first = jobs.create(es, index, "glare", Examples(tuple(glare_ids(truth, 4)))).latest
    with pytest.raises(AutotagError, match="reviewed"):
        jobs.refine(es, index, "glare")
    accept = [i for i in glare_ids(truth, 8) if i not in first.positives][:2]
    reject = [i for i, t in truth.items() if "glare" not in t.tags]
    assert len(reject) >= 3
    for item_id in accept:
        review(es, index, item_id, ReviewAction.ACCEPT)
    for item_id in reject[:3]:
        review(es, index, item_id, ReviewAction.REJECT)
    assert jobs.reviewed(es, index, "glare") == {
        **dict.fromkeys(accept, True),
        **dict.fromkeys(reject[:3], False),
    }
    second = jobs.refine(es, index, "glare").latest
    assert second.training_set == "autotag:glare@2"
    assert set(second.positives) == set(first.positives) | set(accept)
    # a random negative that a reviewer accepted changes sides
    assert set(second.negatives) == (set(first.negatives) | set(reject[:3])) - set(accept)
    assert second.fit["reviews"] == {"accepted": 2, "rejected": 3}
    for item_id, source in sources(es, index).items():
        sets = sorted(p["training_set"] for p in autotag_predictions(source, "glare"))
        assert sets == ([] if item_id == "no-image" else ["autotag:glare@1", "autotag:glare@2"])

    changed = jobs.delete(es, index, "glare")
    assert changed == SCENES
    for source in sources(es, index).values():
        assert autotag_predictions(source, "glare") == []
        assert not any(t.startswith("autotag:glare@") for t in source.get(f.TAGGED_BY, []))
        # the reviewed items keep their history
    assert Registry(es, index).get("glare") is None


def test_refusals(es: Elasticsearch, world: tuple[str, dict[str, Any]], item_index: str) -> None:
    index, _ = world
    with pytest.raises(AutotagError, match="not an autotag name"):
        jobs.create(es, index, "Sun Glare", Examples(("scene-0001",)))
    with pytest.raises(AutotagError, match="not found or without an embedding"):
        jobs.create(es, index, "x", Examples(("scene-0001", "nope", "no-image")))
    with pytest.raises(AutotagError, match="found no item"):
        jobs.create(es, index, "x", Examples(query="image_prefix:nothing_like_it"))
    with pytest.raises(AutotagError, match="both positive and negative"):
        jobs.create(es, index, "x", Examples(("scene-0001",)), Examples(("scene-0001",)))
    with pytest.raises(AutotagError, match="no item of this index has an embedding"):
        jobs.create(es, item_index, "x", Examples(("a",)))
    by_query = jobs.create(
        es, index, "glare_by_query", Examples(query="image_prefix:glare"), run_scoring=False
    )
    assert by_query.latest.positives
    assert by_query.latest.scoring.state == "pending"
