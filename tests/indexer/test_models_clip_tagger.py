"""ClipTagger with random weights: shapes, score ranges, the text-embedding cache, load errors."""

from __future__ import annotations

import json
import os
import pickle
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from embeddings.weights import WeightsUnavailableError
from indexer.clip_tagger import ClipTagger
from indexer.taxonomy import Taxonomy, load_taxonomy, parse_taxonomy

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

MODEL = "autotag-tiny"


@pytest.fixture(scope="module")
def taxonomy() -> Taxonomy:
    return load_taxonomy()


@pytest.fixture(scope="module")
def tagger(taxonomy: Taxonomy, tmp_path_factory: pytest.TempPathFactory) -> ClipTagger:
    return ClipTagger(MODEL, "random", taxonomy, cache_dir=tmp_path_factory.mktemp("cache"))


def images(n: int) -> list[Image.Image]:
    colours = ["red", "navy", "white", "gray", "green"]
    return [Image.new("RGB", (96 + 8 * i, 64), colours[i % len(colours)]) for i in range(n)]


def test_preprocess_gives_model_sized_tensors(tagger: ClipTagger) -> None:
    tensor = tagger.preprocess(Image.new("L", (300, 200), 128))  # any mode, any size
    assert tensor.shape == (3, 64, 64)
    assert tensor.dtype == torch.float32
    restored = pickle.loads(pickle.dumps(tagger.preprocessor))  # DataLoader workers
    assert torch.equal(restored(Image.new("L", (300, 200), 128)), tensor)


def test_predict_scores_every_tag_in_range(tagger: ClipTagger, taxonomy: Taxonomy) -> None:
    batch = torch.stack([tagger.preprocess(image) for image in images(5)])
    predictions = tagger.predict(batch)
    assert len(predictions) == 5
    for prediction in predictions:
        assert [label for label, _ in prediction] == list(taxonomy.image_labels)
        assert all(-1.0 <= score <= 1.0 for _, score in prediction)
        scores = dict(prediction)
        for group in taxonomy.groups:
            # undoing the calibration gives the group's softmax back: it sums to one
            k = len(group.labels)
            probabilities = [
                1 / k + s * (1 - 1 / k) if s >= 0 else 1 / k + s / k
                for s in (scores[label] for label in group.labels)
            ]
            assert sum(probabilities) == pytest.approx(1.0, abs=1e-4)
    assert tagger.predict(batch[:0]) == []


def test_model_name_records_architecture_and_weights_hash(tagger: ClipTagger) -> None:
    assert tagger.model_name == f"open_clip:{MODEL}@{tagger.weights_hash[:8]}"
    assert len(tagger.weights_hash) == 64


def test_text_embeddings_are_cached_by_model_weights_and_prompts(
    taxonomy: Taxonomy, tmp_path: Path
) -> None:
    first = ClipTagger(MODEL, "random", taxonomy, cache_dir=tmp_path)
    assert not first.text_cache_hit
    assert first.text_cache_path.is_file()
    second = ClipTagger(MODEL, "random", taxonomy, cache_dir=tmp_path)
    assert second.text_cache_hit
    assert second.text_cache_path == first.text_cache_path
    batch = torch.stack([first.preprocess(image) for image in images(2)])
    assert torch.allclose(first.scores(batch), second.scores(batch))

    other_prompts = parse_taxonomy(
        {"groups": [{"name": "w", "tags": [{"label": "w_a"}, {"label": "w_b"}]}]}
    )
    third = ClipTagger(MODEL, "random", other_prompts, cache_dir=tmp_path)
    assert not third.text_cache_hit
    assert third.text_cache_path != first.text_cache_path
    assert len(list(tmp_path.glob("clip-text-*.safetensors"))) == 2
    # a taxonomy without independent tags needs no neutral prompts
    assert [label for label, _ in third.predict(batch)[0]] == ["w_a", "w_b"]


def test_a_corrupt_cache_file_is_recomputed(taxonomy: Taxonomy, tmp_path: Path) -> None:
    first = ClipTagger(MODEL, "random", taxonomy, cache_dir=tmp_path)
    first.text_cache_path.write_bytes(b"not a safetensors file")
    again = ClipTagger(MODEL, "random", taxonomy, cache_dir=tmp_path)
    assert not again.text_cache_hit
    assert ClipTagger(MODEL, "random", taxonomy, cache_dir=tmp_path).text_cache_hit


def test_local_checkpoint_and_local_dir(
    tagger: ClipTagger, taxonomy: Taxonomy, tmp_path: Path
) -> None:
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in tagger._model.state_dict().items()}
    folder = tmp_path / "model"
    folder.mkdir()
    save_file(state, str(folder / "open_clip_model.safetensors"))
    config = json.loads(Path("indexer/models/configs/autotag-tiny.json").read_text())
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config}))
    from_file = ClipTagger(
        MODEL, str(folder / "open_clip_model.safetensors"), taxonomy, cache_dir=tmp_path
    )
    from_dir = ClipTagger("", f"local-dir:{folder}", taxonomy, cache_dir=tmp_path)
    assert from_file.weights_hash != tagger.weights_hash  # a file hash, not a tensor hash
    assert from_file.text_cache_path != tagger.text_cache_path  # keyed by the weights hash
    assert from_dir.model_name.startswith("open_clip:model@")
    batch = torch.stack([tagger.preprocess(image) for image in images(2)])
    assert torch.allclose(from_file.scores(batch), tagger.scores(batch), atol=1e-5)


def test_pretrained_tag_without_network_fails_fast(taxonomy: Taxonomy) -> None:
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="local-dir:") as error:
        ClipTagger("ViT-B-32", "laion2b_s34b_b79k", taxonomy)
    assert time.monotonic() - started < 10
    assert "cannot download" in str(error.value)


def test_unreachable_hub_fails_fast_without_offline_mode(
    taxonomy: Taxonomy, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embeddings import weights as model_weights

    for name in model_weights.OFFLINE_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(model_weights, "host_reachable", lambda host, **_: False)
    with pytest.raises(WeightsUnavailableError, match=r"huggingface\.co cannot be reached"):
        ClipTagger("ViT-B-32", "openai", taxonomy)


@pytest.mark.parametrize(
    ("model", "weights", "error", "message"),
    [
        ("autotag-tiny", "no-such-tag", WeightsUnavailableError, "neither a file nor"),
        ("autotag-tiny", "/nonexistent/weights.safetensors", WeightsUnavailableError, "not found"),
        ("no-such-model", "random", ValueError, "unknown open_clip model"),
        ("", "local-dir:/nonexistent", WeightsUnavailableError, "open_clip_config.json"),
    ],
)
def test_loading_errors(
    taxonomy: Taxonomy, model: str, weights: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ClipTagger(model, weights, taxonomy)


def test_local_dir_without_weights_is_an_error(taxonomy: Taxonomy, tmp_path: Path) -> None:
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": {}}))
    with pytest.raises(WeightsUnavailableError, match="no weights file"):
        ClipTagger("", f"local-dir:{tmp_path}", taxonomy)
