"""Similarity search and autotags through the client, against a real server and node holding
synthetic-world scenes embedded by the shipped tiny CLIP (``tests/embedded_world.py``)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from elasticsearch import Elasticsearch

from api.app import create_app
from client import Client, NotFound
from embeddings.clip import ClipEncoder
from harness.browser import served
from indexer.models import TINY_CLIP
from search import parse
from search.evaluate import nearest
from search.similarity import split
from store.embeddings import record_embedding_model
from store.mapping import index_settings, item_mapping
from tests.api.conftest import REVIEW_KEY
from tests.client.conftest import settings_for
from tests.embedded_world import scene_items

torch.set_num_threads(min(2, torch.get_num_threads()))
pytestmark = pytest.mark.es
SCENES = 120


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return ClipEncoder("", TINY_CLIP)


@pytest.fixture(scope="module")
def world(es: Elasticsearch, encoder: ClipEncoder) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    index = f"test-client-similar-{uuid.uuid4().hex[:10]}"
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    record_embedding_model(es, index, encoder.identity())
    items, _ = scene_items(encoder, SCENES, 5151)
    operations: list[dict[str, Any]] = []
    for item in items:
        operations += [{"index": {"_index": index, "_id": item["item_id"]}}, item]
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    yield index, items
    es.indices.delete(index=[index, f"{index}-autotags"], ignore_unavailable=True)


@pytest.fixture
def scenes(es_url: str, world: tuple[str, list[dict[str, Any]]]) -> Iterator[Client]:
    app = create_app(settings_for(es_url, world[0], clip_weights=TINY_CLIP))
    with served(app) as url, Client(url, api_key=REVIEW_KEY) as client:
        yield client


def test_a_similarity_search_pages_through_the_k_nearest(
    scenes: Client, world: tuple[str, list[dict[str, Any]]], encoder: ClipEncoder
) -> None:
    query = 'similar:"a photo of a road in the snow at night"~7'
    pages = list(scenes.pages(query, size=3))
    hits = [hit for page in pages for hit in page.hits]
    assert [len(page.hits) for page in pages] == [3, 3, 1]
    assert pages[0].total == 7
    assert pages[0].skipped_without_embedding == 0
    similarities = [hit.similarity for hit in hits]
    assert all(s is not None for s in similarities)
    assert similarities == sorted(similarities, reverse=True)  # type: ignore[type-var]
    clause, _ = split(parse(query))
    assert clause is not None
    vector = [float(x) for x in encoder.text_embedding(clause.value)]
    exact = nearest(parse(query), world[1], vector)
    # int8 quantization may swap the last of the seven with the eighth.
    assert len({h.item.item_id for h in hits} & {d["item_id"] for d, _ in exact.hits}) >= 6
    assert scenes.count(query).count == 7


def test_an_autotag_is_created_scored_and_deleted(
    scenes: Client, world: tuple[str, list[dict[str, Any]]]
) -> None:
    some = sorted(item["item_id"] for item in world[1])[:3]
    created = scenes.create_autotag("scene_a", {"item_ids": some}, wait=True)
    version = created.versions[0]
    assert (version.version, version.positives, version.scoring.state) == (1, 3, "done")
    assert version.scoring.scored == SCENES
    assert [a.name for a in scenes.autotags().autotags] == ["scene_a"]
    assert scenes.get_autotag("scene_a").versions[0].training_set == "autotag:scene_a@1"
    assert scenes.score_autotag("scene_a", wait=True).versions[0].scoring.scored == SCENES
    assert scenes.count('training_set = "autotag:scene_a@1"').count == SCENES
    deleted = scenes.delete_autotag("scene_a", wait=True)
    assert (deleted.state, deleted.items_changed) == ("done", SCENES)
    with pytest.raises(NotFound) as gone:
        scenes.get_autotag("scene_a")
    assert gone.value.code == "autotag_not_found"


def test_an_autotag_scored_in_the_background_is_followed(
    scenes: Client, world: tuple[str, list[dict[str, Any]]]
) -> None:
    some = sorted(item["item_id"] for item in world[1])[3:6]
    started = scenes.create_autotag("scene_b", {"item_ids": some}, description="three scenes")
    assert started.description == "three scenes"
    deadline = time.monotonic() + 60
    while (state := scenes.get_autotag("scene_b").versions[0].scoring).state != "done":
        assert state.state in ("pending", "running"), state
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert state.scored == SCENES
    assert scenes.delete_autotag("scene_b", wait=True).items_changed == SCENES
