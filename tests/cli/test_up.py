"""The main job (`autotag up`) without serving: sample predictions and tagged sample images."""

from __future__ import annotations

import asyncio
import shlex
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from elasticsearch import Elasticsearch

from api.app import create_app
from api.settings import Settings
from cli.up import (
    SAMPLE_IMAGES,
    SAMPLE_SIZE,
    index_sample_images,
    load_sample,
    local_review_key,
    page_invitation,
    review_example,
    with_local_review_key,
)
from indexer.models import DEMO_MODEL_PREFIX
from search import parse, translate
from store import schema as f
from store.image_roots import roots_in_answer, roots_index_name, roots_search_body
from store.mapping import versioned_index_name
from store.settings import StoreSettings

pytestmark = pytest.mark.es


@pytest.fixture
def alias(es: Elasticsearch) -> Iterator[str]:
    name = f"test-up-{uuid.uuid4().hex[:8]}"
    yield name
    es.indices.delete(index=versioned_index_name(name), ignore_unavailable=True)
    es.indices.delete(index=roots_index_name(name), ignore_unavailable=True)


def test_the_main_job_loads_and_tags_the_samples_idempotently(
    es: Elasticsearch,
    es_url: str,
    alias: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Configured as a user would: the index through AUTOTAG_INDEX, the cache through
    # AUTOTAG_CACHE; the URL is handed over as `autotag up` hands on the one it found.
    monkeypatch.setenv("AUTOTAG_INDEX", alias)
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path))
    settings = StoreSettings()
    first = load_sample(settings, [es_url])
    assert (first.written, first.failed) == (2 * SAMPLE_SIZE, [])
    assert index_sample_images(settings, [es_url]) == 0
    assert (tmp_path / "sample-images").is_dir()
    said = capsys.readouterr().out
    assert "synthetic sample images" in said
    assert "with the demo models" in said
    es.indices.refresh(index=alias)
    assert es.count(index=alias)["count"] == SAMPLE_SIZE + SAMPLE_IMAGES
    assert es.indices.get_alias(name=alias) == {
        versioned_index_name(alias): {"aliases": {alias: {"is_write_index": True}}}
    }
    # the sample images carry their embeddings (similar: works on them), the sample
    # predictions (no images) none
    with_embedding = {"exists": {"field": f.EMBEDDING}}
    assert es.count(index=alias, query=with_embedding)["count"] == SAMPLE_IMAGES
    rainy = translate(parse('training_set = "tiny_v1" AND image_prefix:weather_rain'))
    assert es.count(index=alias, query=rainy)["count"] > 0
    # the sample is tagged by the demo models, and its predictions say so
    tagged = es.search(index=alias, query=rainy, size=1)["hits"]["hits"][0]["_source"]
    predictions = tagged["image_predictions"] + tagged.get("object_predictions", [])
    models = {p["model"] for p in predictions}
    assert models
    assert all(model.startswith(DEMO_MODEL_PREFIX) for model in models)
    # The sample images' folder is recorded on the index: the API (and the page) shows them.
    images = (tmp_path / "sample-images" / "images").resolve()
    recorded = es.search(index=roots_index_name(alias), body=roots_search_body()).body
    assert roots_in_answer(recorded) == [str(images)]
    app = create_app(Settings(es_url=es_url, index=alias, cache=tmp_path))

    async def thumbnail() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.get(f"/v1/items/{tagged['item_id']}/thumbnail")

    shown = asyncio.run(thumbnail())
    assert shown.status_code == 200, shown.text
    assert shown.headers["content-type"] == "image/jpeg"
    again = load_sample(settings, [es_url])
    assert (again.written, again.skipped) == (0, 2 * SAMPLE_SIZE)


def test_the_local_review_key_is_made_once_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    settings = StoreSettings(cache=tmp_path)
    first = local_review_key(settings)
    assert len(first) >= 32
    assert local_review_key(settings) == first
    assert ((tmp_path / "review-key").stat().st_mode & 0o777) == 0o600
    served = with_local_review_key(Settings(review_api_keys="alice:s3cret"), first)
    assert [key.name for key in served.review_keys()] == ["alice", "local"]
    assert served.review_keys()[1].secret == first.encode()


def test_the_printed_review_example_accepts_a_prediction(
    es: Elasticsearch, es_url: str, alias: str, tmp_path: Path
) -> None:
    """The curl `autotag up` prints works against the API served with the local key."""
    settings = Settings(es_url=es_url, index=alias, cache=tmp_path)
    load_sample(settings, [es_url])
    secret = local_review_key(settings)
    example = review_example(settings, [es_url], "http://testserver", secret)
    words = shlex.split(example)
    assert words[:4] == ["curl", "-s", "-X", "POST"]
    url, header = words[4], words[6]
    assert url.endswith("/accept")
    name, _, value = header.partition(": ")
    app = create_app(with_local_review_key(settings, secret))

    async def accept() -> httpx.Response:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                return await c.post(url.removeprefix("http://testserver"), headers={name: value})

    answer = asyncio.run(accept())
    assert answer.status_code == 200, answer.text
    event = answer.json()["event"]
    assert (event["action"], event["api_key"], event["after"]["status"]) == (
        "accept",
        "local",
        "accepted",
    )


def test_the_page_invitation_names_the_page_and_a_key_that_reviews(
    es: Elasticsearch, es_url: str, alias: str, tmp_path: Path
) -> None:
    settings = Settings(es_url=es_url, index=alias, cache=tmp_path)
    load_sample(settings, [es_url])
    secret = local_review_key(settings)
    said = page_invitation("http://testserver", secret)
    assert "http://testserver/ " in said
    key = said.rsplit(": ", 1)[1]
    assert key == secret
    app = create_app(with_local_review_key(settings, secret))

    async def use_the_page() -> tuple[httpx.Response, httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
                page = await c.get("/")
                item = (await c.get("/v1/items/sample-00001")).json()
                pending = next(
                    p for p in item["item"]["image_predictions"] if p["status"] == "pending"
                )
                body = {
                    "decisions": [{"prediction_id": pending["id"], "action": "accept"}],
                    "expected_version": item["version"],
                }
                saved = await c.post(
                    "/v1/items/sample-00001/review", json=body, headers={"X-API-Key": key}
                )
                return page, saved

    page, saved = asyncio.run(use_the_page())
    assert page.status_code == 200
    assert "autotag review" in page.text
    assert saved.status_code == 200, saved.text
