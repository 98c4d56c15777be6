"""``similar:`` and ``similar_to:`` through the API, against a real node: ranking, the filter,
skipped items, pages, counts, and every refusal (a 400 with the envelope, never a 500).

The items are synthetic-world scenes embedded by the shipped tiny CLIP, with their ground truth
as predictions, so the reference evaluator (``search.evaluate.nearest``, exact cosine) can be
compared with what Elasticsearch answers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import torch
from elasticsearch import Elasticsearch

from api.app import create_app
from api.settings import Settings
from embeddings.clip import ClipEncoder
from indexer.clip_tagger import RANDOM_WEIGHTS
from indexer.models import TINY_CLIP, TINY_CLIP_MODEL
from search import evaluate, parse
from search.evaluate import nearest
from search.similarity import split
from store import schema as f
from store.documents import prepare_item
from store.embeddings import record_embedding_model
from store.mapping import index_settings, item_mapping
from tests.api.conftest import client_for, error_of
from tests.embedded_world import scene_items as embedded_scenes

torch.set_num_threads(min(2, torch.get_num_threads()))
pytestmark = [pytest.mark.es, pytest.mark.anyio]
SCENES = 80
WITHOUT_EMBEDDING = ("imported-1", "imported-2", "imported-3")


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return ClipEncoder("", TINY_CLIP)


def scene_items(encoder: ClipEncoder) -> list[dict[str, Any]]:
    items, _ = embedded_scenes(encoder, SCENES, 4242)
    for item_id in WITHOUT_EMBEDDING:
        weather = {"id": f"{item_id}-w", "label": "weather_snow", "score": 0.9}
        items.append(
            prepare_item({"item_id": item_id, "dataset": "world", "image_predictions": [weather]})
        )
    return items


@pytest.fixture(scope="module")
def world(es: Elasticsearch, encoder: ClipEncoder) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    index = f"test-similar-{uuid.uuid4().hex[:10]}"
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    record_embedding_model(es, index, encoder.identity())
    items = scene_items(encoder)
    operations: list[dict[str, Any]] = []
    for item in items:
        operations += [{"index": {"_index": index, "_id": item["item_id"]}}, item]
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    yield index, items
    es.indices.delete(index=index)


def settings_for(es_url: str, index: str, **extra: Any) -> Settings:
    return Settings(es_url=es_url, index=index, max_page_size=200, **extra)


@pytest.fixture
async def api(
    es_url: str, world: tuple[str, list[dict[str, Any]]]
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings_for(es_url, world[0], clip_weights=TINY_CLIP))
    async with client_for(app) as client:
        client.app_state = app.state  # type: ignore[attr-defined]
        yield client


async def search(client: httpx.AsyncClient, query: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/v1/search", json={"query": query, **body})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def text_vector(encoder: ClipEncoder, query: str) -> list[float]:
    clause, _ = split(parse(query))
    assert clause is not None
    return [float(x) for x in encoder.text_embedding(clause.value)]


async def test_text_similarity_ranks_like_the_reference_evaluator(
    api: httpx.AsyncClient, world: tuple[str, list[dict[str, Any]]], encoder: ClipEncoder
) -> None:
    query = 'similar:"a photo of a road in the snow at night"~10'
    result = await search(api, query, size=10)
    exact = nearest(parse(query), world[1], text_vector(encoder, query))
    got = [(hit["item"]["item_id"], hit["similarity"]) for hit in result["hits"]]
    want = [(doc["item_id"], similarity) for doc, similarity in exact.hits]
    assert result["total"] == 10
    assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
    # int8 quantization moves similarities by a little; the top ten barely change.
    assert len({i for i, _ in got} & {i for i, _ in want}) >= 9
    exact_by_id = dict(want)
    for item_id, similarity in got:
        if item_id in exact_by_id:
            assert similarity == pytest.approx(exact_by_id[item_id], abs=0.02)
    # Snowy nights are what the tiny model calls snowy nights.
    truth = {doc["item_id"]: {p["label"] for p in doc["image_predictions"]} for doc in world[1]}
    snowy_nights = sum({"weather_snow", "time_of_day_night"} <= truth[i] for i, _ in got)
    assert snowy_nights >= 8
    assert result["skipped_without_embedding"] == len(WITHOUT_EMBEDDING)
    assert "embedding" not in result["hits"][0]["item"]


async def test_every_other_condition_filters_before_ranking(
    api: httpx.AsyncClient, world: tuple[str, list[dict[str, Any]]], encoder: ClipEncoder
) -> None:
    query = (
        'similar:"rain at night"~15 AND object_prefix:car AND score >= 0.5 '
        'AND NOT dataset = "other"'
    )
    result = await search(api, query, size=50)
    tree = parse(query)
    _, rest = split(tree)
    assert rest is not None
    by_id = {doc["item_id"]: doc for doc in world[1]}
    ids = [hit["item"]["item_id"] for hit in result["hits"]]
    assert ids
    assert all(evaluate(rest, by_id[item_id]) for item_id in ids)
    exact = nearest(tree, world[1], text_vector(encoder, query))
    assert len(ids) == len(exact.hits) == min(15, result["total"])
    assert len(set(ids) & {doc["item_id"] for doc, _ in exact.hits}) >= len(ids) - 1
    # The matched predictions are the cars the filter asked for.
    for hit in result["hits"]:
        matched = [m for m in hit["matched_predictions"] if m["kind"] == "object"]
        assert matched
    # Items without an embedding that the filter selects are counted, not ranked: none here
    # (they carry no car), three once the filter is only the dataset.
    assert result["skipped_without_embedding"] == 0
    only_dataset = await search(api, 'similar:"rain" AND dataset = "world"', size=5)
    assert only_dataset["skipped_without_embedding"] == len(WITHOUT_EMBEDDING)


async def test_similar_to_an_item(
    api: httpx.AsyncClient, world: tuple[str, list[dict[str, Any]]]
) -> None:
    query = "similar_to:scene-0007~5"
    result = await search(api, query, size=5)
    ids = [hit["item"]["item_id"] for hit in result["hits"]]
    exact = nearest(parse(query), world[1])  # the item's own stored embedding
    assert "scene-0007" not in ids
    assert len(set(ids) & {doc["item_id"] for doc, _ in exact.hits}) >= 4


async def test_pages_stop_at_k(api: httpx.AsyncClient) -> None:
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        body: dict[str, Any] = {"size": 3}
        if cursor:
            body["cursor"] = cursor
        page = await search(api, 'similar:"fog on a highway"~7', **body)
        assert page["total"] == 7
        seen += [hit["item"]["item_id"] for hit in page["hits"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    whole = await search(api, 'similar:"fog on a highway"~7', size=20)
    assert seen == [hit["item"]["item_id"] for hit in whole["hits"]]


async def test_count_translate_and_facets(api: httpx.AsyncClient) -> None:
    count = await api.post("/v1/count", json={"query": 'similar:"snow"~1000 AND dataset = world'})
    assert count.status_code == 200
    # min(k, items the filter selects that have an embedding): 40 scenes in "world".
    assert count.json()["count"] == SCENES // 2
    assert count.json()["skipped_without_embedding"] == len(WITHOUT_EMBEDDING)
    small = await api.post("/v1/count", json={"query": 'similar:"snow"~4 AND dataset = world'})
    assert small.json()["count"] == 4
    translated = await api.post("/v1/translate", json={"query": 'similar:"snow"~4 score > 0.5'})
    knn = translated.json()["dsl"]["knn"]
    assert (knn["field"], knn["k"], len(knn["query_vector"])) == (f.EMBEDDING, 4, 64)
    assert translated.json()["query"] == "similar:snow~4 AND score > 0.5"
    facets = await api.post("/v1/facets", json={"query": 'similar:"snow"~6'})
    assert facets.status_code == 200
    assert facets.json()["total"] == 6


async def test_text_embeddings_are_cached(api: httpx.AsyncClient) -> None:
    clip = api.app_state.clip  # type: ignore[attr-defined]
    await search(api, 'similar:"a cached prompt"~3')
    hits = (await clip.encoder()).text_cache_hits
    await search(api, 'similar:"a cached prompt"~3 AND dataset = world')
    assert (await clip.encoder()).text_cache_hits == hits + 1


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ('similar:"x" OR object_prefix:car', "cannot be ORed"),
        ('NOT similar:"x"', "cannot be negated"),
        ('count(similar:"x") > 1', "cannot be counted"),
        ('similar:"x" AND similar_to:a', "only one similarity clause"),
        ('similar:"x"~0', "out of range"),
        ("object_prefix:car~3", "only follows"),
    ],
)
async def test_misplaced_similarity_is_a_query_error_with_a_caret(
    api: httpx.AsyncClient, query: str, message: str
) -> None:
    response = await api.post("/v1/search", json={"query": query})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_query"
    assert message in error["message"]
    assert "^" in error["details"]["rendered"]


async def test_unknown_items_and_items_without_embedding(api: httpx.AsyncClient) -> None:
    for item_id, message in (("nope", "no item `nope`"), ("imported-1", "has no embedding")):
        query = f"similar_to:{item_id} AND dataset = world"
        response = await api.post("/v1/search", json={"query": query})
        assert response.status_code == 400
        error = error_of(response)
        assert message in error["message"]
        assert (error["details"]["start"], error["details"]["end"]) == (11, 11 + len(item_id))


async def test_refusals_say_why(
    es: Elasticsearch, es_url: str, world: tuple[str, list[dict[str, Any]]], item_index: str
) -> None:
    cases: list[tuple[Settings, str, str, str]] = [
        # no CLIP configured: texts cannot be embedded (items can)
        (settings_for(es_url, world[0]), 'similar:"snow"', "similarity_unavailable", "CLIP"),
        # another model: its text vectors would be meaningless here
        (
            settings_for(es_url, world[0], clip_model=TINY_CLIP_MODEL, clip_weights=RANDOM_WEIGHTS),
            'similar:"snow"',
            "embedding_model_mismatch",
            "is not the model that made this index's embeddings",
        ),
        # an index with the field but no embedding yet
        (settings_for(es_url, item_index), "similar_to:a", "similarity_unavailable", "yet"),
    ]
    old = f"test-similar-v1-{uuid.uuid4().hex[:8]}"
    mapping = item_mapping()
    del mapping["properties"][f.EMBEDDING]
    es.indices.create(index=old, mappings=mapping)
    cases.append(
        (settings_for(es_url, old), 'similar:"x"', "similarity_unavailable", "autotag migrate")
    )
    try:
        for settings, query, code, words in cases:
            async with client_for(create_app(settings), raise_app_exceptions=False) as client:
                response = await client.post("/v1/search", json={"query": query})
                assert response.status_code == 400, (query, response.text)
                error = error_of(response)
                assert error["code"] == code
                assert words in error["message"]
                count = await client.post("/v1/count", json={"query": query})
                assert count.status_code == 400
    finally:
        es.indices.delete(index=old)
    mismatch = cases[1]
    async with client_for(create_app(mismatch[0])) as client:
        details = error_of(await client.post("/v1/search", json={"query": mismatch[1]}))["details"]
    assert details["index_model"]["name"].startswith("demo:open_clip:autotag-tiny@")
    assert details["api_model"]["name"].startswith("open_clip:autotag-tiny@")
