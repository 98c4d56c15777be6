"""Text search quality on the synthetic world, end to end: images -> ``autotag index``'s pipeline
with the shipped tiny CLIP -> a real node -> ``/v1/search`` with ``similar:"..."``.

For every combination of the world's weather, time of day and scene (24 prompts, worded as a
person would), precision@20 is the share of the 20 hits whose ground
truth has all three. Stated target: a mean of at least ``MIN_MEAN_PRECISION`` and no prompt below
``MIN_PRECISION`` (measured on this seed: mean 0.994, worst 0.95).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from elasticsearch import Elasticsearch

from api.app import create_app
from api.settings import Settings
from indexer.clip_tagger import ClipTagger
from indexer.models import TINY_CLIP
from indexer.pipeline import IndexOptions, run_index
from indexer.sources import read_manifest
from indexer.synthetic import SCENES, TIMES_OF_DAY, WEATHERS
from indexer.synthetic.dataset import MANIFEST_FILE, read_ground_truth, write_dataset
from indexer.taxonomy import load_taxonomy
from store.admin import ensure_index
from store.embeddings import record_embedding_model
from store.mapping import versioned_index_name
from store.writer import PredictionWriter
from tests.api.conftest import client_for

torch.set_num_threads(min(2, torch.get_num_threads()))
pytestmark = [pytest.mark.es, pytest.mark.slow, pytest.mark.anyio]
SEED = 27_182  # not used in training
IMAGES = 1000
TOP = 20
MIN_MEAN_PRECISION = 0.95
MIN_PRECISION = 0.8


@pytest.fixture
def alias(es: Elasticsearch) -> Iterator[str]:
    name = f"test-quality-{uuid.uuid4().hex[:8]}"
    yield name
    es.indices.delete(index=versioned_index_name(name), ignore_unavailable=True)


PHRASES = {
    "clear": "in clear weather",
    "rain": "in the rain",
    "snow": "in the snow",
    "fog": "in fog",
    "day": "during the day",
    "night": "at night",
    "highway": "on a highway",
    "urban": "in a city",
    "rural": "in the countryside",
}


def prompt(weather: str, time: str, scene: str) -> str:
    return f"a photo of a road {PHRASES[weather]} {PHRASES[time]} {PHRASES[scene]}."


async def test_text_search_precision_at_20(
    es: Elasticsearch,
    es_url: str,
    alias: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    truth = read_ground_truth(write_dataset(tmp_path / "world", IMAGES, SEED))
    taxonomy = load_taxonomy()
    clip = ClipTagger("", TINY_CLIP, taxonomy, cache_dir=tmp_path / "cache")
    ensure_index(es, alias)
    record_embedding_model(es, alias, clip.embedding_model)
    summary = run_index(
        read_manifest(tmp_path / "world" / MANIFEST_FILE),
        PredictionWriter(es, alias, training_set="tiny_v1"),
        clip=clip,
        detector=None,
        options=IndexOptions(batch_size=64, workers=1, progress=False),
    )
    assert (summary.tagged, summary.failed) == (IMAGES, 0)
    es.indices.refresh(index=alias)

    precision: dict[str, float] = {}
    settings = Settings(es_url=es_url, index=alias, clip_weights=TINY_CLIP)
    async with client_for(create_app(settings)) as client:
        for weather, time, scene in itertools.product(WEATHERS, TIMES_OF_DAY, SCENES):
            wanted = {f"weather_{weather}", f"time_of_day_{time}", f"scene_{scene}"}
            relevant = sum(wanted <= t.tags for t in truth.values())
            assert relevant >= TOP  # precision@20 can reach 1
            text = prompt(weather, time, scene)
            response = await client.post(
                "/v1/search", json={"query": f'similar:"{text}"~{TOP}', "size": TOP}
            )
            assert response.status_code == 200, response.text
            hits = [hit["item"]["item_id"] for hit in response.json()["hits"]]
            assert len(hits) == TOP
            precision[text] = sum(wanted <= truth[i].tags for i in hits) / TOP
    mean = sum(precision.values()) / len(precision)
    with capsys.disabled():
        print(f"\n[similarity quality] {IMAGES} scenes (seed {SEED}), tiny CLIP, precision@{TOP}:")
        for text, value in sorted(precision.items(), key=lambda item: item[1]):
            print(f"  {value:.2f}  {text}")
        print(f"  mean {mean:.3f}, worst {min(precision.values()):.2f}")
    assert mean >= MIN_MEAN_PRECISION
    assert min(precision.values()) >= MIN_PRECISION
