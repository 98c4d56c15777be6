"""Train the tiny open_clip model (``autotag-tiny``) contrastively on the synthetic world.

    HF_HUB_OFFLINE=1 python -m indexer.synthetic.train_clip --out indexer/models/autotag-tiny-clip

Captions describe a random subset of a scene's attributes in varied words (a superset of the
default taxonomy's phrases); sun glare, being salient, is always mentioned when present, so a
caption without it (e.g. a generic "a driving scene.") cannot describe a glare scene. Since many
captions in a batch fit many images, the loss is a multi-positive InfoNCE: every caption that
could have been written for an image counts as its positive. The
result is saved as a ``local-dir:`` folder (open_clip_config.json + fp16 safetensors).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.transform import PreprocessCfg, image_transform_v2
from safetensors.torch import save_file

from indexer.models import CONFIGS_DIR, DEMO_CONFIG_KEY, TINY_CLIP_DIR, TINY_CLIP_MODEL
from indexer.synthetic.world import SceneSpec, generate

TRAIN_SEED = 1000
EVAL_SEED = 2000
IMAGE_SIZE = 64
PREPROCESS_CFG: dict[str, Any] = {
    "size": IMAGE_SIZE,
    "mode": "RGB",
    "mean": list(OPENAI_DATASET_MEAN),
    "std": list(OPENAI_DATASET_STD),
    "interpolation": "bicubic",
    "resize_mode": "squash",
}

TEMPLATES = (
    "a photo of a road {}.",
    "a picture of a street {}.",
    "a driving scene {}.",
    "a dashcam image {}.",
    "an image of traffic {}.",
    "a view from a car {}.",
)
GENERIC = (
    "a photo of a road.",
    "a picture of a street.",
    "a driving scene.",
    "a dashcam image.",
    "an image of traffic.",
)
PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "weather": {
        "clear": ("in clear weather", "on a clear dry day", "under a clear sky", "in dry weather"),
        "rain": ("in the rain", "in rainy weather", "during a rainstorm", "with rain falling"),
        "snow": ("in the snow", "in snowy weather", "during a snowfall", "with snow falling"),
        "fog": ("in fog", "in foggy weather", "in thick mist", "in hazy fog"),
    },
    "time_of_day": {
        "day": ("during the day", "in daylight", "in the daytime", "by day"),
        "night": ("at night", "in the dark at night", "at nighttime", "after dark"),
    },
    "scene": {
        "highway": ("on a highway", "on a multi-lane motorway", "on a freeway", "on an expressway"),
        "urban": ("in a city", "in an urban area with buildings", "downtown", "on a city street"),
        "rural": (
            "in the countryside",
            "in a rural area with fields and trees",
            "on a country road",
            "in farmland",
        ),
    },
}
GLARE = ("with sun glare", "with the bright sun in view", "with the sun shining into the camera")

Facts = dict[str, Any]  # attribute -> value a caption implies (glare: whether mentioned)


def caption(spec: SceneSpec, rng: random.Random) -> tuple[str, Facts]:
    """A caption of ``spec`` mentioning a random subset of its attributes, and that subset."""
    if rng.random() < 0.08 and not spec.glare:
        return rng.choice(GENERIC), {"glare": False}
    values = {"weather": spec.weather, "time_of_day": spec.time_of_day, "scene": spec.scene}
    facts: Facts = {k: v for k, v in values.items() if rng.random() < 0.5}
    # glare is salient: a caption of a glare scene always mentions it
    facts["glare"] = spec.glare
    if len(facts) == 1 and not spec.glare:
        key = rng.choice(list(values))
        facts[key] = values[key]
    parts = [rng.choice(PHRASES[k][v]) for k, v in facts.items() if k != "glare"]
    if facts.get("glare"):
        parts.append(rng.choice(GLARE))
    rng.shuffle(parts)
    text = " and ".join(parts) if len(parts) < 3 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return rng.choice(TEMPLATES).format(text), facts


def consistent(facts: Facts, spec: SceneSpec) -> bool:
    for key, value in facts.items():
        actual = spec.glare if key == "glare" else getattr(spec, key)
        if actual != value:
            return False
    return True


def load_images(n: int, seed: int) -> tuple[torch.Tensor, list[SceneSpec]]:
    cfg = PreprocessCfg(
        **{**PREPROCESS_CFG, "mean": OPENAI_DATASET_MEAN, "std": OPENAI_DATASET_STD}
    )
    transform = image_transform_v2(cfg, is_train=False)
    images, specs = [], []
    for image, truth in generate(n, seed):
        images.append(transform(image))
        assert truth.spec is not None
        specs.append(truth.spec)
    return torch.stack(images), specs


def model_config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads((CONFIGS_DIR / f"{TINY_CLIP_MODEL}.json").read_text())
    return config


def save(model: torch.nn.Module, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / "open_clip_model.safetensors"))
    config = {
        "model_name": TINY_CLIP_MODEL,
        "model_cfg": model_config(),
        "preprocess_cfg": PREPROCESS_CFG,
        "trained_on": f"indexer.synthetic world, seed {TRAIN_SEED}",
        DEMO_CONFIG_KEY: True,  # knows only the synthetic world: names get the demo prefix
    }
    (out / "open_clip_config.json").write_text(json.dumps(config, indent=2) + "\n")


@torch.no_grad()
def zero_shot_accuracy(
    model: Any, tokenizer: Any, images: torch.Tensor, specs: list[SceneSpec]
) -> dict[str, float]:
    """Accuracy per attribute with the default taxonomy's prompts (argmax in groups,
    glare against the neutral prompts)."""
    from indexer.taxonomy import load_taxonomy

    taxonomy = load_taxonomy()
    model.eval()
    features = F.normalize(model.encode_image(images), dim=-1)

    def embed(prompts: tuple[str, ...]) -> torch.Tensor:
        text = F.normalize(model.encode_text(tokenizer(list(prompts))), dim=-1)
        return F.normalize(text.mean(0), dim=-1)

    result = {}
    for group in taxonomy.groups:
        text = torch.stack([embed(t.prompts) for t in group.tags])
        predicted = (features @ text.T).argmax(1).tolist()
        truth = [group.labels.index(f"{group.name}_{getattr(s, group.name)}") for s in specs]
        result[group.name] = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(specs)
    neutral = embed(taxonomy.neutral_prompts)
    for tag in taxonomy.independent_tags:
        margin = (features @ embed(tag.prompts) - features @ neutral).tolist()
        hits = [(m > 0) == getattr(s, tag.label) for m, s in zip(margin, specs, strict=True)]
        result[tag.label] = sum(hits) / len(specs)
    model.train()
    return result


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    started = time.monotonic()
    open_clip.add_model_config(CONFIGS_DIR)
    model = open_clip.create_model(TINY_CLIP_MODEL, pretrained=None)
    tokenizer = open_clip.get_tokenizer(TINY_CLIP_MODEL)
    images, specs = load_images(args.images, TRAIN_SEED)
    eval_images, eval_specs = load_images(args.eval_images, EVAL_SEED)
    print(f"data ready in {time.monotonic() - started:.0f}s: {len(specs)} train images")

    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    warmup: int = max(1, int(args.steps) // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / float(args.steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
    model.train()
    for step in range(args.steps):
        index = torch.randint(len(specs), (args.batch,)).tolist()
        batch = images[index]
        if rng.random() < 0.5:
            batch = batch.flip(-1)  # mirrored scenes keep every attribute
        pairs = [caption(specs[i], rng) for i in index]
        tokens = tokenizer([text for text, _ in pairs])
        targets = torch.tensor(
            [[consistent(facts, specs[i]) for _, facts in pairs] for i in index],
            dtype=torch.float32,
        )
        image_features, text_features, scale = model(batch, tokens)
        logits = scale * image_features @ text_features.T
        loss = 0.5 * (
            F.cross_entropy(logits, targets / targets.sum(1, keepdim=True))
            + F.cross_entropy(logits.T, targets.T / targets.T.sum(1, keepdim=True))
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 100 == 0 or step == args.steps - 1:
            line = f"step {step:5d} loss {loss.item():.3f} scale {scale.item():.1f}"
            if step % 500 == 0 or step == args.steps - 1:
                accuracy = zero_shot_accuracy(model, tokenizer, eval_images, eval_specs)
                line += " " + " ".join(f"{k}={v:.3f}" for k, v in accuracy.items())
            print(f"{line} [{time.monotonic() - started:.0f}s]", flush=True)
    save(model.eval(), args.out)
    print(f"saved {args.out} after {time.monotonic() - started:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TINY_CLIP_DIR)
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--eval-images", type=int, default=500)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    train(parser.parse_args())


if __name__ == "__main__":
    main()
