"""CLIP zero-shot image tagging with open_clip: every taxonomy image tag gets a calibrated score.

Weights are given as one of:

- an open_clip pretrained tag (``ViT-B-32`` + ``laion2b_s34b_b79k``): taken from the Hugging Face
  cache when present, downloaded otherwise; with no network it fails at once with
  :class:`~indexer.model_weights.WeightsUnavailableError`;
- a local checkpoint file (``.safetensors``, ``.bin``, ``.pt``, ``.pth``) of architecture
  ``model``;
- ``local-dir:<folder>`` holding ``open_clip_config.json`` and the weights (``model`` may be empty);
  a config with ``"demo": true`` (the shipped tiny model) makes the recorded model name start
  with ``demo:``;
- ``random``: untrained weights (seeded), for tests and benchmarks.

Each tag's prompt ensemble is encoded once; the mean unit embeddings are cached on disk, keyed by
model, weights hash, prompts and taxonomy. Scores follow :mod:`indexer.calibration`.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import open_clip
import torch
from open_clip.transform import PreprocessCfg, image_transform_v2
from PIL import Image
from safetensors.torch import load_file, save_file

from indexer.calibration import group_scores, independent_scores
from indexer.model_weights import (
    WeightsUnavailableError,
    ensure_download_possible,
    file_sha256,
    state_dict_sha256,
)
from indexer.models import CONFIGS_DIR, DEMO_CONFIG_KEY, DEMO_MODEL_PREFIX
from indexer.taxonomy import Taxonomy
from store.settings import StoreSettings

RANDOM_WEIGHTS = "random"
LOCAL_DIR_PREFIX = "local-dir:"
TEXT_CACHE_VERSION = 1
_CHECKPOINT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_HOW_TO_PROVIDE = (
    "Provide the weights locally instead: download the checkpoint on a machine with internet "
    "and pass its file path as the weights (with the same model name), or pass "
    "`local-dir:<folder>` with open_clip_config.json and open_clip_model.safetensors, or copy a "
    "populated Hugging Face cache (HF_HOME) here. The shipped tiny model "
    "(indexer.models.TINY_CLIP, `--demo-models`) is a demo trained on synthetic scenes only."
)

open_clip.add_model_config(CONFIGS_DIR)


@dataclass(frozen=True)
class ClipPreprocessor:
    """Picklable image -> tensor transform; give this (not the tagger) to DataLoader workers."""

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


def default_cache_dir(autotag_cache: Path | None = None) -> Path:
    """Where text embeddings are cached: ``text-embeddings`` under autotag's cache folder
    (``autotag_cache``, default the ``AUTOTAG_CACHE`` setting)."""
    return (autotag_cache or StoreSettings().cache_dir()) / "text-embeddings"


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
        self.device = torch.device(device)
        loaded = load_clip(model, weights, self.device)
        self._model = loaded.model.eval()
        self._tokenizer = loaded.tokenizer
        self.architecture = loaded.architecture
        self.weights_hash = loaded.weights_hash
        self.demo = loaded.demo
        prefix = DEMO_MODEL_PREFIX if loaded.demo else ""
        self.model_name = f"{prefix}open_clip:{loaded.architecture}@{loaded.weights_hash[:8]}"
        cfg = PreprocessCfg(**self._model.visual.preprocess_cfg)
        self.preprocessor = ClipPreprocessor(image_transform_v2(cfg, is_train=False))
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
        size = self._model.visual.preprocess_cfg["size"]
        return int(max(size)) if isinstance(size, tuple | list) else int(size)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One image -> ``(3, S, S)`` float tensor (same as :attr:`preprocessor`)."""
        return self.preprocessor(image)

    @torch.inference_mode()
    def scores(self, batch: torch.Tensor) -> torch.Tensor:
        """Calibrated scores, shape ``(N, len(labels))``, in [-1, 1]."""
        if batch.shape[0] == 0:  # open_clip's ViT cannot reshape an empty batch
            return torch.empty(0, len(self._labels))
        images = batch.to(self.device, non_blocking=True)
        features = self._model.encode_image(images, normalize=True).float()
        scale = self._model.logit_scale.exp().clamp(max=100.0).float()
        logits = scale * features @ self._tag_embeddings.T
        parts = [group_scores(logits[:, s]) for s in self._group_slices]
        if self._neutral_embedding is not None:
            neutral = scale * features @ self._neutral_embedding.T
            parts.append(independent_scores(logits[:, self._independent], neutral))
        return torch.cat(parts, dim=1).cpu()

    def predict(self, batch: torch.Tensor) -> list[list[tuple[str, float]]]:
        """Per image: ``(taxonomy label, score in [-1, 1])`` for every image tag."""
        return [list(zip(self._labels, row, strict=True)) for row in self.scores(batch).tolist()]

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
        tokens = self._tokenizer(list(prompts)).to(self.device)
        embeddings = self._model.encode_text(tokens, normalize=True).float()
        return torch.nn.functional.normalize(embeddings.mean(dim=0), dim=-1)
