"""The main job (`autotag up`) without serving: sample predictions and tagged sample images."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from cli.up import SAMPLE_IMAGES, SAMPLE_SIZE, index_sample_images, load_sample
from search import parse, translate

pytestmark = pytest.mark.es


@pytest.fixture
def alias(es: Elasticsearch) -> Iterator[str]:
    name = f"test-up-{uuid.uuid4().hex[:8]}"
    yield name
    es.indices.delete(index=f"{name}-v1", ignore_unavailable=True)


def test_the_main_job_loads_and_tags_the_samples_idempotently(
    es: Elasticsearch, es_url: str, alias: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path))
    first = load_sample([es_url], alias)
    assert (first.written, first.failed) == (2 * SAMPLE_SIZE, [])
    assert index_sample_images(alias) == 0
    es.indices.refresh(index=alias)
    assert es.count(index=alias)["count"] == SAMPLE_SIZE + SAMPLE_IMAGES
    assert es.indices.get_alias(name=alias) == {
        f"{alias}-v1": {"aliases": {alias: {"is_write_index": True}}}
    }
    rainy = translate(parse('training_set = "tiny_v1" AND image_prefix:weather_rain'))
    assert es.count(index=alias, query=rainy)["count"] > 0
    again = load_sample([es_url], alias)
    assert (again.written, again.skipped) == (0, 2 * SAMPLE_SIZE)
