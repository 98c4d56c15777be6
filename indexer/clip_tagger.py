"""CLIP zero-shot image tagging with open_clip: every taxonomy image tag gets a calibrated score.

The model and its weights are loaded by :class:`embeddings.clip.ClipEncoder` (every weight
specification it accepts works here); the tagger adds the taxonomy. Each tag's prompt ensemble
is encoded once; the mean unit embeddings are cached on disk, keyed by model, weights hash,
prompts and taxonomy. Scores follow :mod:`indexer.calibration`. The image embeddings computed
for tagging are handed back too (:meth:`ClipTagger.predict_with_embeddings`), for the index.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from pathlib import Path

import open_clip
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from embeddings.clip import LOCAL_DIR_PREFIX, RANDOM_WEIGHTS, ClipEncoder, ClipPreprocessor
from indexer.calibration import group_scores, independent_scores
from indexer.models import CONFIGS_DIR
from indexer.taxonomy import Taxonomy
from store.embeddings import EmbeddingModel
from store.settings import StoreSettings

__all__ = ["LOCAL_DIR_PREFIX", "RANDOM_WEIGHTS", "ClipPreprocessor", "ClipTagger"]

TEXT_CACHE_VERSION = 1

# The shipped tiny architecture's config, so `--clip-model autotag-tiny FILE` works.
open_clip.add_model_config(CONFIGS_DIR)


def default_cache_dir(autotag_cache: Path | None = None) -> Path:
    """Where text embeddings are cached: ``text-embeddings`` under autotag's cache folder
    (``autotag_cache``, default the ``AUTOTAG_CACHE`` setting)."""
    return (autotag_cache or StoreSettings().cache_dir()) / "text-embeddings"


class ClipTagger:
    """Zero-shot tagger: a batch of preprocessed images -> (label, score) for every image tag."""

    def __init__(
        self,
        model: str,
        weights: str,
        taxonomy: Taxonomy,
        *,
        device: str = "cpu",
        cache_dir: Path | None = None,
    ) -> None:
        self.taxonomy = taxonomy
        self.encoder = ClipEncoder(model, weights, device=device)
        self.device = self.encoder.device
        self._model = self.encoder.model
        self.architecture = self.encoder.architecture
        self.weights_hash = self.encoder.weights_hash
        self.demo = self.encoder.demo
        self.model_name = self.encoder.model_name
        self.preprocessor = self.encoder.preprocessor
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.text_cache_path = self.cache_dir / f"clip-text-{self._text_cache_key()}.safetensors"
        self.text_cache_hit = False
        self._tag_embeddings, self._neutral_embedding = self._text_embeddings()
        self._labels = taxonomy.image_labels
        n_grouped = sum(len(g.tags) for g in taxonomy.groups)
        starts = [0]
        for group in taxonomy.groups:
            starts.append(starts[-1] + len(group.tags))
        self._group_slices = [slice(a, b) for a, b in itertools.pairwise(starts)]
        self._independent = slice(n_grouped, len(self._labels))

    @property
    def labels(self) -> tuple[str, ...]:
        """The image tag labels, in the order :meth:`scores` returns them."""
        return self._labels

    @property
    def input_min_side(self) -> int:
        """The shorter side images are resized to; a larger decode adds nothing."""
        return self.encoder.input_min_side

    @property
    def embedding_model(self) -> EmbeddingModel:
        """The model of the image embeddings :meth:`predict_with_embeddings` returns."""
        return self.encoder.identity()

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One image -> ``(3, S, S)`` float tensor (same as :attr:`preprocessor`)."""
        return self.preprocessor(image)

    def scores(self, batch: torch.Tensor) -> torch.Tensor:
        """Calibrated scores, shape ``(N, len(labels))``, in [-1, 1]."""
        return self._scores(self.encoder.encode_images(batch))

    @torch.inference_mode()
    def _scores(self, features: torch.Tensor) -> torch.Tensor:
        if features.shape[0] == 0:
            return torch.empty(0, len(self._labels))
        scale = self._model.logit_scale.exp().clamp(max=100.0).float()
        logits = scale * features @ self._tag_embeddings.T
        parts = [group_scores(logits[:, s]) for s in self._group_slices]
        if self._neutral_embedding is not None:
            neutral = scale * features @ self._neutral_embedding.T
            parts.append(independent_scores(logits[:, self._independent], neutral))
        return torch.cat(parts, dim=1).cpu()

    def predict(self, batch: torch.Tensor) -> list[list[tuple[str, float]]]:
        """Per image: ``(taxonomy label, score in [-1, 1])`` for every image tag."""
        return self.predict_with_embeddings(batch)[0]

    def predict_with_embeddings(
        self, batch: torch.Tensor
    ) -> tuple[list[list[tuple[str, float]]], torch.Tensor]:
        """:meth:`predict`, and the images' unit embeddings ``(N, dims)`` on the CPU."""
        features = self.encoder.encode_images(batch)
        rows = self._scores(features).tolist()
        tags = [list(zip(self._labels, row, strict=True)) for row in rows]
        return tags, features.cpu()

    def _text_cache_key(self) -> str:
        key = {
            "version": TEXT_CACHE_VERSION,
            "model": self.architecture,
            "weights": self.weights_hash,
            "taxonomy": self.taxonomy.fingerprint(),
            "prompts": [list(t.prompts) for t in self.taxonomy.image_tags],
            "neutral": list(self.taxonomy.neutral_prompts),
        }
        blob = json.dumps(key, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:32]

    def _text_embeddings(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.text_cache_path.is_file():
            try:
                cached = load_file(str(self.text_cache_path))
                self.text_cache_hit = True
                stored = cached.get("neutral")
                return cached["tags"].to(self.device), (
                    stored.to(self.device) if stored is not None else None
                )
            except Exception:  # a torn or foreign file: recompute and overwrite it
                self.text_cache_hit = False
        tags = torch.stack([self._ensemble(t.prompts) for t in self.taxonomy.image_tags])
        tensors = {"tags": tags.cpu().contiguous()}
        neutral: torch.Tensor | None = None
        if self.taxonomy.independent_tags:
            neutral = self._ensemble(self.taxonomy.neutral_prompts).unsqueeze(0)
            tensors["neutral"] = neutral.cpu().contiguous()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        partial = self.text_cache_path.with_suffix(f".{os.getpid()}.tmp")
        save_file(tensors, str(partial))
        os.replace(partial, self.text_cache_path)
        return tags, neutral

    @torch.inference_mode()
    def _ensemble(self, prompts: tuple[str, ...]) -> torch.Tensor:
        """Mean of the prompts' unit text embeddings, renormalised."""
        embeddings = self.encoder.encode_texts(prompts)
        return torch.nn.functional.normalize(embeddings.mean(dim=0), dim=-1)
