"""Train the tiny torchvision Faster R-CNN on the synthetic world.

    HF_HUB_OFFLINE=1 python -m indexer.synthetic.train_detector \
        --out indexer/models/autotag-tiny-detector.safetensors

Saves fp16 safetensors plus a json config that :class:`indexer.detector.ObjectDetector` loads.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch

from indexer.detector import BACKGROUND, TINY_ARCH, build_tiny_detector, save_detector
from indexer.models import TINY_DETECTOR_PATH
from indexer.synthetic.metrics import mean_average_precision
from indexer.synthetic.world import DETECTOR_LABELS, OBJECT_LABELS, GroundTruth, generate

TRAIN_SEED = 3000
EVAL_SEED = 4000
LABELS = [BACKGROUND, *(DETECTOR_LABELS[label] for label in OBJECT_LABELS)]
NAME = "autotag-tiny-detector"


def load(n: int, seed: int) -> tuple[list[torch.Tensor], list[GroundTruth]]:
    from indexer.detector import preprocess_image

    images, truths = [], []
    for image, truth in generate(n, seed):
        images.append(preprocess_image(image))
        truths.append(truth)
    return images, truths


def target(truth: GroundTruth, width: int, flip: bool) -> dict[str, torch.Tensor]:
    boxes = torch.tensor([box for _, box in truth.objects], dtype=torch.float32).reshape(-1, 4)
    if flip:
        boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)
    labels = torch.tensor(
        [LABELS.index(DETECTOR_LABELS[label]) for label, _ in truth.objects], dtype=torch.int64
    )
    return {"boxes": boxes, "labels": labels}


@torch.no_grad()
def evaluate(model: torch.nn.Module, images: list[torch.Tensor], truths: list[GroundTruth]) -> str:
    model.eval()
    detections = []
    for start in range(0, len(images), 16):
        outputs = model([im.float() / 255 for im in images[start : start + 16]])
        for out in outputs:
            detections.append(
                [
                    (OBJECT_LABELS[int(k) - 1], float(s), tuple(b.tolist()))
                    for b, s, k in zip(out["boxes"], out["scores"], out["labels"], strict=True)
                ]
            )
    model.train()
    m_ap, per_label = mean_average_precision(detections, [t.objects for t in truths], OBJECT_LABELS)
    return f"mAP@0.5={m_ap:.3f} " + " ".join(f"{k}={v:.3f}" for k, v in per_label.items())


def train(args: argparse.Namespace) -> None:
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = random.Random(0)
    started = time.monotonic()
    images, truths = load(args.images, TRAIN_SEED)
    eval_images, eval_truths = load(args.eval_images, EVAL_SEED)
    print(f"data ready in {time.monotonic() - started:.0f}s", flush=True)
    model = build_tiny_detector(len(LABELS))
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    warmup = 100
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup) * (0.1 if step > 0.75 * args.steps else 1.0),
    )
    for step in range(args.steps):
        index = rng.sample(range(len(images)), args.batch)
        flips = [rng.random() < 0.5 for _ in index]
        batch = [
            (images[i].flip(-1) if flip else images[i]).float() / 255
            for i, flip in zip(index, flips, strict=True)
        ]
        targets = [
            target(truths[i], images[i].shape[-1], flip)
            for i, flip in zip(index, flips, strict=True)
        ]
        losses = model(batch, targets)
        loss = torch.stack(list(losses.values())).sum()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        torch.nn.utils.clip_grad_norm_(params, 10.0)
        optimizer.step()
        scheduler.step()
        if step % 100 == 0 or step == args.steps - 1:
            parts = " ".join(f"{k.removeprefix('loss_')}={v.item():.3f}" for k, v in losses.items())
            line = f"step {step:5d} loss {loss.item():.3f} ({parts})"
            if (step % 500 == 0 and step) or step == args.steps - 1:
                line += " " + evaluate(model, eval_images, eval_truths)
            print(f"{line} [{time.monotonic() - started:.0f}s]", flush=True)
    model.eval()
    save_detector(model, args.out, arch=TINY_ARCH, labels=LABELS, name=NAME, demo=True)
    print(f"saved {args.out} after {time.monotonic() - started:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=TINY_DETECTOR_PATH)
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--eval-images", type=int, default=200)
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--threads", type=int, default=2)
    train(parser.parse_args())


if __name__ == "__main__":
    main()
