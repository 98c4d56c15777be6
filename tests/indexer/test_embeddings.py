"""Image embeddings in the index: written by ``autotag index``, one model per index, backfilled
by ``autotag embed`` without touching predictions or reviews (real node, shipped tiny CLIP)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from elasticsearch import Elasticsearch
from PIL import Image
from safetensors.torch import save_file

from api.models import ReviewAction, ReviewRequest
from api.review import review
from api.settings import ApiKey, Settings
from cli.main import main
from embeddings.clip import ClipEncoder, load_clip
from indexer.backfill import run_backfill
from indexer.models import TINY_CLIP
from indexer.synthetic.dataset import MANIFEST_FILE, write_dataset
from store import schema as f
from store.embeddings import read_embedding_model, write_embeddings
from store.writer import ItemPredictions, PredictionWriter

torch.set_num_threads(min(2, torch.get_num_threads()))
pytestmark = pytest.mark.es
SEED = 515


@pytest.fixture(scope="module")
def encoder() -> ClipEncoder:
    return ClipEncoder("", TINY_CLIP)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("world")
    write_dataset(folder, 12, SEED)
    return folder


def expected_vector(encoder: ClipEncoder, path: str) -> np.ndarray[Any, Any]:
    image = Image.open(path).convert("RGB")
    return encoder.encode_images(encoder.preprocessor(image)[None])[0].numpy()


def index_argv(world: Path, index: str, tmp_path: Path, *extra: str) -> list[str]:
    return [
        "index",
        str(world / MANIFEST_FILE),
        "--index",
        index,
        "--training-set",
        "tiny_v1",
        "--no-progress",
        "--workers",
        "0",
        "--failures-file",
        str(tmp_path / "failures.jsonl"),
        *extra,
    ]


def test_index_writes_each_image_embedding_and_records_the_model(
    es: Elasticsearch,
    es_url: str,
    item_index: str,
    world: Path,
    encoder: ClipEncoder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    argv = index_argv(world, item_index, tmp_path, "--demo-models", "--no-detector")
    assert main(argv) == 0
    es.indices.refresh(index=item_index)
    assert read_embedding_model(es, item_index) == encoder.identity()
    hits = es.search(index=item_index, size=50)["hits"]["hits"]
    assert len(hits) == 12
    for hit in hits:
        stored = np.asarray(hit["_source"][f.EMBEDDING], dtype=np.float32)
        assert stored.shape == (encoder.dims,)
        want = expected_vector(encoder, hit["_source"][f.URI])
        np.testing.assert_allclose(stored, want, atol=1e-5)

    # Another model's embeddings never join these: the run is refused before any write...
    other = tmp_path / "other"
    (other / "open_clip_config.json").parent.mkdir()
    config = json.loads(
        (Path(TINY_CLIP.removeprefix("local-dir:")) / "open_clip_config.json").read_text()
    )
    (other / "open_clip_config.json").write_text(json.dumps(config))
    model = load_clip("", TINY_CLIP, torch.device("cpu")).model
    state = {
        k: v.clone() + (0.01 if k.endswith("proj") else 0) for k, v in model.state_dict().items()
    }
    save_file(
        {k: v.contiguous() for k, v in state.items()}, str(other / "open_clip_model.safetensors")
    )
    argv = index_argv(
        world,
        item_index,
        tmp_path,
        "--clip-weights",
        f"local-dir:{other}",
        "--no-detector",
        "--force",
    )
    assert main(argv) == 1
    refused = capsys.readouterr().err
    assert f"holds embeddings of {encoder.model_name}" in " ".join(refused.split())
    # ...unless told not to store embeddings.
    assert main([*argv, "--no-embeddings"]) == 0
    es.indices.refresh(index=item_index)
    assert read_embedding_model(es, item_index) == encoder.identity()


def imported(world: Path) -> list[ItemPredictions]:
    """The world's items as an import gives them: predictions, a uri, no embedding."""
    items = []
    for line in (world / MANIFEST_FILE).read_text().splitlines():
        row = json.loads(line)
        predictions = [
            {"id": f"{row['item_id']}-p", "label": "weather_rain", "score": 0.4, "model": "m"}
        ]
        items.append(ItemPredictions({**row}, predictions))
    return items


def test_backfill_embeds_only_what_lacks_and_touches_nothing_else(
    es: Elasticsearch, item_index: str, world: Path, encoder: ClipEncoder
) -> None:
    items = imported(world)
    items.append(ItemPredictions({"item_id": "remote", "uri": "s3://bucket/x.jpg"}))
    items.append(ItemPredictions({"item_id": "broken", "uri": str(world / "missing.png")}))
    assert not PredictionWriter(es, item_index, training_set="ext").write(items).failed
    es.indices.refresh(index=item_index)
    before = {
        hit["_id"]: hit["_source"] for hit in es.search(index=item_index, size=50)["hits"]["hits"]
    }

    summary = run_backfill(es, item_index, encoder, progress=False, batch_size=5)
    assert (summary.lacking, summary.embedded, summary.no_image, summary.failed) == (14, 12, 1, 1)
    assert summary.failures[0].item_id == "broken"
    es.indices.refresh(index=item_index)
    after = {
        hit["_id"]: hit["_source"] for hit in es.search(index=item_index, size=50)["hits"]["hits"]
    }
    for item_id, source in after.items():
        vector = source.pop(f.EMBEDDING, None)
        assert source == before[item_id]  # predictions, states, every other field unchanged
        if item_id in ("remote", "broken"):
            assert vector is None
        else:
            want = expected_vector(encoder, source[f.URI])
            np.testing.assert_allclose(np.asarray(vector, dtype=np.float32), want, atol=1e-5)
    assert read_embedding_model(es, item_index) == encoder.identity()
    # A second run finds only the two without a usable image.
    again = run_backfill(es, item_index, encoder, progress=False)
    assert (again.lacking, again.embedded) == (2, 0)


@pytest.mark.anyio
async def test_embeddings_and_reviews_never_undo_each_other(
    es: Elasticsearch, es_url: str, item_index: str, world: Path
) -> None:
    from elasticsearch import AsyncElasticsearch

    from api.es_transport import make_client

    items = imported(world)[:2]
    assert not PredictionWriter(es, item_index, training_set="ext").write(items).failed
    first, second = (entry.item_id for entry in items)
    settings = Settings(es_url=es_url, index=item_index, review_refresh="true")
    key = ApiKey("alice", b"k")
    client: AsyncElasticsearch = make_client(settings)
    vector = np.arange(1, 9, dtype=np.float32)
    try:
        # A review lands between the backfill listing an item and writing its embedding...
        await review(
            client,
            settings,
            item_id=first,
            prediction_id=f"{first}-p",
            action=ReviewAction.REJECT,
            request=ReviewRequest(),
            key=key,
        )
        assert write_embeddings(es, item_index, {first: vector}, refresh=True).written == 1
        # ...and an embedding lands before a review reads the item.
        assert write_embeddings(es, item_index, {second: vector}, refresh=True).written == 1
        await review(
            client,
            settings,
            item_id=second,
            prediction_id=f"{second}-p",
            action=ReviewAction.ACCEPT,
            request=ReviewRequest(),
            key=key,
        )
    finally:
        await client.close()
    unit = (vector / np.linalg.norm(vector)).tolist()
    for item_id, status in ((first, "rejected"), (second, "accepted")):
        source = es.get(index=item_index, id=item_id)["_source"]
        assert source[f.IMAGE_PREDICTIONS][0]["status"] == status
        assert len(source[f.REVIEW_HISTORY]) == 1
        np.testing.assert_allclose(source[f.EMBEDDING], unit, rtol=1e-6)


def test_a_writer_merge_keeps_the_embedding(es: Elasticsearch, item_index: str) -> None:
    writer = PredictionWriter(es, item_index, training_set="a", refresh=True)
    vector = np.ones(8, dtype=np.float32) / np.sqrt(8)
    first = {"item_id": "x", f.EMBEDDING: vector}
    assert writer.write([ItemPredictions(first, [{"label": "glare", "score": 0.5}])]).written
    other = PredictionWriter(es, item_index, training_set="b", refresh=True)
    assert other.write(
        [ItemPredictions({"item_id": "x"}, [{"label": "fog", "score": 0.1}])]
    ).written
    source = es.get(index=item_index, id="x")["_source"]
    assert {p["training_set"] for p in source[f.IMAGE_PREDICTIONS]} == {"a", "b"}
    np.testing.assert_allclose(source[f.EMBEDDING], vector, rtol=1e-6)
