"""Which items an export holds, against a real node: every item, and each sampling strategy
checked against a reference computed here from the documents."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from export.spec import Content, Sampling, Strategy
from search import evaluate, parse
from store.documents import prepare_item
from store.mapping import index_settings, item_mapping
from store.schema import label_matches_prefix
from tests.export.helpers import export_items

pytestmark = pytest.mark.es

IMAGE_LABELS = ["weather_clear", "weather_rain", "scene_highway"]
OBJECT_LABELS = ["car", "car_suv", "pedestrian", "traffic_light"]
STATUSES = ["pending", "pending", "accepted", "modified", "rejected"]


def _corpus(rng: random.Random, size: int) -> list[dict[str, Any]]:
    scores = iter(rng.sample(range(-9999, 10000), 2000))  # distinct: no ties in margins
    items = []
    for number in range(size):

        def prediction(labels: list[str], box: bool) -> dict[str, Any]:
            out: dict[str, Any] = {
                "label": rng.choice(labels),
                "score": next(scores) / 10000,
                "status": rng.choice(STATUSES),
                "training_set": rng.choice(["v1", "v2"]),
            }
            if box:
                out["bbox"] = {"x1": 0, "y1": 0, "x2": 10, "y2": 10}
            return out

        items.append(
            prepare_item(
                {
                    "item_id": f"item-{number:03d}",
                    "dataset": rng.choice(["a", "b"]),
                    "width": 100,
                    "height": 100,
                    "image_predictions": [
                        prediction(IMAGE_LABELS, False) for _ in range(rng.randint(0, 2))
                    ],
                    "object_predictions": [
                        prediction(OBJECT_LABELS, True) for _ in range(rng.randint(0, 4))
                    ],
                }
            )
        )
    return items


@pytest.fixture(scope="module")
def corpus(es: Elasticsearch) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    index = f"test-export-{uuid.uuid4().hex[:12]}"
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    items = _corpus(random.Random(17), 120)
    operations: list[dict[str, Any]] = []
    for item in items:
        operations += [{"index": {"_index": index, "_id": item["item_id"]}}, item]
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    yield index, items
    es.indices.delete(index=index, ignore_unavailable=True)


def _matching(items: list[dict[str, Any]], query: str) -> list[str]:
    tree = parse(query)
    return sorted(item["item_id"] for item in items if evaluate(tree, item))


def _visible(item: dict[str, Any], path: str) -> list[dict[str, Any]]:
    return [p for p in item.get(path) or () if p.get("status") != "rejected"]


def test_every_matching_item_in_id_order(
    es_url: str, corpus: tuple[str, list[dict[str, Any]]]
) -> None:
    index, items = corpus
    records, manifest = export_items(es_url, index, "dataset = a OR object_prefix:car")
    ids = [record["item_id"] for record in records]
    assert ids == _matching(items, "dataset = a OR object_prefix:car")
    assert manifest["items"] == len(ids)


def _uncertain_reference(
    items: list[dict[str, Any]], query: str, matched: Any, n: int
) -> list[str]:
    margins = []
    for item in items:
        if not evaluate(parse(query), item):
            continue
        scores = [abs(p["score"]) for p in matched(item)]
        if scores:
            margins.append((min(scores), item["item_id"]))
    return [item_id for _, item_id in sorted(margins)[:n]]


def test_uncertain_takes_the_matched_predictions_nearest_zero(
    es_url: str, corpus: tuple[str, list[dict[str, Any]]]
) -> None:
    index, items = corpus

    def cars(item: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            p
            for p in _visible(item, "object_predictions")
            if label_matches_prefix(p["label"], "car")
        ]

    records, _ = export_items(
        es_url, index, "object_prefix:car", sampling=Sampling(Strategy.UNCERTAIN, 15)
    )
    expected = _uncertain_reference(items, "object_prefix:car", cars, 15)
    assert [r["item_id"] for r in records] == expected


@pytest.mark.parametrize("query", ["dataset = b", "score >= -0.5"])
def test_uncertain_merges_both_lists_and_both_signs(
    es_url: str, corpus: tuple[str, list[dict[str, Any]]], query: str
) -> None:
    index, items = corpus
    low = -0.5 if "score" in query else -math.inf

    def matched(item: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            p
            for path in ("image_predictions", "object_predictions")
            for p in _visible(item, path)
            if p["score"] >= low
        ]

    records, _ = export_items(es_url, index, query, sampling=Sampling(Strategy.UNCERTAIN, 40))
    expected = _uncertain_reference(items, query, matched, 40)
    assert [r["item_id"] for r in records] == expected
    # Items of both signs and both lists are among them.
    chosen = {r["item_id"] for r in records}
    nearest = [p for item in items if item["item_id"] in chosen for p in matched(item)]
    assert any(p["score"] < 0 for p in nearest)
    assert any(p["score"] > 0 for p in nearest)


def test_random_samples_are_reproducible_and_extend(
    es_url: str, corpus: tuple[str, list[dict[str, Any]]]
) -> None:
    index, items = corpus
    query = "object_prefix:car OR dataset = a"
    matching = set(_matching(items, query))

    def sample(n: int, seed: int) -> list[str]:
        records, _ = export_items(es_url, index, query, sampling=Sampling(Strategy.RANDOM, n, seed))
        return [r["item_id"] for r in records]

    first = sample(20, seed=1)
    assert len(first) == len(set(first)) == 20
    assert set(first) <= matching
    assert sample(20, seed=1) == first
    assert sample(40, seed=1)[:20] == first
    assert sample(20, seed=2) != first
    # Not the id order: a draw, not the first items.
    assert first != sorted(first)
    assert set(sample(10_000, seed=3)) == matching


def test_stratified_takes_n_items_per_label(
    es_url: str, corpus: tuple[str, list[dict[str, Any]]]
) -> None:
    index, items = corpus
    query = "score >= -1"
    n = 3
    records, _ = export_items(
        es_url, index, query, sampling=Sampling(Strategy.STRATIFIED, n, seed=5)
    )
    ids = [r["item_id"] for r in records]
    assert len(ids) == len(set(ids))
    chosen = [item for item in items if item["item_id"] in set(ids)]
    for path, labels in (
        ("image_predictions", IMAGE_LABELS),
        ("object_predictions", OBJECT_LABELS),
    ):
        for label in labels:
            holders = [
                item["item_id"]
                for item in items
                if any(p["label"] == label for p in _visible(item, path))
            ]
            held = [
                item for item in chosen if any(p["label"] == label for p in _visible(item, path))
            ]
            assert len(held) >= min(n, len(holders)), label
    assert len(ids) <= n * (len(IMAGE_LABELS) + len(OBJECT_LABELS))
    again, _ = export_items(es_url, index, query, sampling=Sampling(Strategy.STRATIFIED, n, seed=5))
    assert [r["item_id"] for r in again] == ids


def test_reviewed_content_holds_only_items_with_reviewed_predictions(
    es_url: str, corpus: tuple[str, list[dict[str, Any]]]
) -> None:
    index, items = corpus
    records, manifest = export_items(
        es_url, index, "dataset = a", content=Content.REVIEWED, training_set="v2"
    )

    def reviewed(item: dict[str, Any], path: str) -> list[dict[str, Any]]:
        return [
            p
            for p in item.get(path) or ()
            if p["status"] in ("accepted", "modified") and p["training_set"] == "v2"
        ]

    expected = [
        item
        for item in items
        if item["dataset"] == "a"
        and (reviewed(item, "image_predictions") or reviewed(item, "object_predictions"))
    ]
    assert [r["item_id"] for r in records] == [item["item_id"] for item in expected]
    for record, item in zip(records, expected, strict=True):
        for path in ("image_predictions", "object_predictions"):
            assert [p["score"] for p in record[path]] == [p["score"] for p in reviewed(item, path)]
    assert manifest["content"] == "reviewed"
    assert manifest["training_set"] == "v2"
