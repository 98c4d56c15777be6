"""open_clip models: loading weights, image and text embeddings, and the model's identity.

Weights are given as one of:

- an open_clip pretrained tag (``ViT-B-32`` + ``laion2b_s34b_b79k``): taken from the Hugging Face
  cache when present, downloaded otherwise; with no network it fails at once with
  :class:`~embeddings.weights.WeightsUnavailableError`;
- a local checkpoint file (``.safetensors``, ``.bin``, ``.pt``, ``.pth``) of architecture
  ``model``;
- ``local-dir:<folder>`` holding ``open_clip_config.json`` and the weights (``model`` may be empty);
  a config with ``"demo": true`` (the shipped tiny model) makes the recorded model name start
  with ``demo:``;
- ``random``: untrained weights (seeded), for tests and benchmarks.

:class:`ClipEncoder` is what the indexer (image tagging and image embeddings) and the API (the
text tower, for ``similar:"..."``) share; its :meth:`~ClipEncoder.identity` is what the index
records about the model that made its embeddings (:mod:`store.embeddings`).
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import numpy.typing as npt
import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image

from embeddings.weights import (
    DEMO_CONFIG_KEY,
    DEMO_MODEL_PREFIX,
    WeightsUnavailableError,
    ensure_download_possible,
    file_sha256,
    state_dict_sha256,
)
from store.embeddings import EmbeddingModel

RANDOM_WEIGHTS = "random"
LOCAL_DIR_PREFIX = "local-dir:"
_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_HOW_TO_PROVIDE = (
    "Provide the weights locally instead: download the checkpoint on a machine with internet "
    "and pass its file path as the weights (with the same model name), or pass "
    "`local-dir:<folder>` with open_clip_config.json and open_clip_model.safetensors, or copy a "
    "populated Hugging Face cache (HF_HOME) here. The shipped tiny model "
    "(indexer.models.TINY_CLIP, `--demo-models`) is a demo trained on synthetic scenes only."
)


@dataclass(frozen=True)
class ClipPreprocessor:
    """Picklable image -> tensor transform; give this (not the model) to DataLoader workers."""

    transform: Callable[[Image.Image], torch.Tensor]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        return self.transform(image.convert("RGB"))


@dataclass(frozen=True)
class LoadedClip:
    model: Any  # open_clip.CLIP
    tokenizer: Callable[[list[str]], torch.Tensor]
    architecture: str
    weights_hash: str
    demo: bool = False  # the config says these are demo weights (synthetic world only)


def load_clip(model: str, weights: str, device: torch.device) -> LoadedClip:
    """Build an open_clip model from any of the weight specifications in the module docstring."""
    if weights.startswith(LOCAL_DIR_PREFIX):
        folder = Path(weights.removeprefix(LOCAL_DIR_PREFIX)).expanduser()
        config_path = folder / "open_clip_config.json"
        if not config_path.is_file():
            raise WeightsUnavailableError(f"{weights}: no open_clip_config.json in {folder}")
        checkpoints = sorted(p for p in folder.iterdir() if p.suffix in _CHECKPOINT_SUFFIXES)
        if not checkpoints:
            raise WeightsUnavailableError(f"{weights}: no weights file in {folder}")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        architecture = model or str(config.get("model_name") or folder.name)
        digest = hashlib.sha256("".join(file_sha256(p) for p in checkpoints).encode()).hexdigest()
        clip = open_clip.create_model(f"{LOCAL_DIR_PREFIX}{folder}", device=device)
        tokenizer = open_clip.get_tokenizer(f"{LOCAL_DIR_PREFIX}{folder}")
        demo = config.get(DEMO_CONFIG_KEY) is True
        return LoadedClip(clip, tokenizer, architecture, digest, demo=demo)

    if model not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {model!r}; known: {open_clip.list_models()}")
    tokenizer = open_clip.get_tokenizer(model)
    if weights == RANDOM_WEIGHTS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            clip = open_clip.create_model(model, pretrained=None, device="cpu")
        return LoadedClip(clip.to(device), tokenizer, model, state_dict_sha256(clip))

    path = Path(weights).expanduser()
    if path.is_file():
        clip = open_clip.create_model(model, pretrained=str(path), device=device)
        return LoadedClip(clip, tokenizer, model, file_sha256(path))
    if path.suffix in _CHECKPOINT_SUFFIXES or os.sep in weights:
        raise WeightsUnavailableError(f"weights file not found: {path}")

    cfg = open_clip.get_pretrained_cfg(model, weights)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model)
        raise WeightsUnavailableError(
            f"{weights!r} is neither a file nor a pretrained tag of {model!r} (tags: {tags})"
        )
    cached = _cached_pretrained_file(cfg)
    if cached is None:
        host = "huggingface.co" if cfg.get("hf_hub") else urlparse(cfg.get("url", "")).netloc
        ensure_download_possible(host, f"open_clip weights {model}/{weights}", _HOW_TO_PROVIDE)
        try:
            clip = open_clip.create_model(model, pretrained=weights, device=device)
        except Exception as exc:
            raise WeightsUnavailableError(
                f"downloading open_clip weights {model}/{weights} failed: {exc}. {_HOW_TO_PROVIDE}"
            ) from exc
        cached = _cached_pretrained_file(cfg)
        digest = file_sha256(cached) if cached else state_dict_sha256(clip)
        return LoadedClip(clip, tokenizer, model, digest)
    # a file bypasses the tag, so carry over what the tag would have set
    preprocess = {k: cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if k in cfg}
    clip = open_clip.create_model(
        model,
        pretrained=str(cached),
        device=device,
        force_quick_gelu=bool(cfg.get("quick_gelu", False)),
        force_preprocess_cfg=preprocess,
    )
    return LoadedClip(clip, tokenizer, model, file_sha256(cached))


def _cached_pretrained_file(cfg: dict[str, Any]) -> Path | None:
    """The already downloaded checkpoint of a pretrained tag, without touching the network."""
    if "file" in cfg and Path(cfg["file"]).is_file():
        return Path(cfg["file"])
    if hub := cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        # "org/repo/" names the default file, "org/repo/file.bin" a particular one
        repo_id, filename = (hub.rstrip("/"), "") if hub.endswith("/") else os.path.split(hub)
        names = [filename] if filename else []
        names += ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo_id=repo_id, filename=name)
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    if url := cfg.get("url"):
        # where open_clip's URL downloads land
        candidate = Path("~/.cache/clip").expanduser() / os.path.basename(urlparse(str(url)).path)
        if candidate.is_file():
            return candidate
    return None


Vectors = npt.NDArray[np.float32]


class ClipEncoder:
    """One loaded open_clip model: unit image and text embeddings, and what it is.

    Text embeddings are kept in a small in-memory LRU cache (``text_cache_size`` texts): a
    dashboard repeats the same few prompts. Thread-safe: the model runs under a lock.
    """

    def __init__(
        self, model: str, weights: str, *, device: str = "cpu", text_cache_size: int = 1024
    ) -> None:
        self.device = torch.device(device)
        loaded = load_clip(model, weights, self.device)
        self.model = loaded.model.eval()
        self.tokenizer = loaded.tokenizer
        self.architecture = loaded.architecture
        self.weights_hash = loaded.weights_hash
        self.demo = loaded.demo
        prefix = DEMO_MODEL_PREFIX if loaded.demo else ""
        self.model_name = f"{prefix}open_clip:{loaded.architecture}@{loaded.weights_hash[:8]}"
        self.dims = int(self.model.visual.output_dim)
        cfg = PreprocessCfg(**self.model.visual.preprocess_cfg)
        self.preprocessor = ClipPreprocessor(image_transform_v2(cfg, is_train=False))
        self._lock = threading.Lock()
        self._texts: OrderedDict[str, Vectors] = OrderedDict()
        self._text_cache_size = text_cache_size
        self.text_cache_hits = 0

    def identity(self) -> EmbeddingModel:
        """What an index records about the model that made its embeddings."""
        return EmbeddingModel(self.model_name, self.weights_hash, self.dims)

    @property
    def input_min_side(self) -> int:
        """The shorter side images are resized to; a larger decode adds nothing."""
        size = self.model.visual.preprocess_cfg["size"]
        return int(max(size)) if isinstance(size, tuple | list) else int(size)

    @torch.inference_mode()
    def encode_images(self, batch: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` preprocessed images -> ``(N, dims)`` unit float32 embeddings."""
        if batch.shape[0] == 0:  # open_clip's ViT cannot reshape an empty batch
            return torch.empty(0, self.dims)
        images = batch.to(self.device, non_blocking=True)
        with self._lock:
            features: torch.Tensor = self.model.encode_image(images, normalize=True)
        return features.float()

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> ``(N, dims)`` unit float32 embeddings (not cached)."""
        tokens = self.tokenizer(list(texts)).to(self.device)
        with self._lock:
            features: torch.Tensor = self.model.encode_text(tokens, normalize=True)
        return features.float()

    def text_embedding(self, text: str) -> Vectors:
        """One text's unit embedding as numpy, from the cache when it was asked before."""
        with self._lock:
            cached = self._texts.get(text)
            if cached is not None:
                self._texts.move_to_end(text)
                self.text_cache_hits += 1
                return cached
        vector: Vectors = self.encode_texts([text])[0].cpu().numpy().astype(np.float32)
        vector.setflags(write=False)
        with self._lock:
            self._texts[text] = vector
            while len(self._texts) > self._text_cache_size:
                self._texts.popitem(last=False)
        return vector
