"""Synthetic-world scenes as stored items: the tiny CLIP's image embedding and the ground truth
written as predictions (training set ``truth``), for tests of similarity and autotags."""

from __future__ import annotations

from typing import Any

import torch

from embeddings.clip import ClipEncoder
from indexer.synthetic import GroundTruth, generate
from store import schema as f
from store.documents import prepare_item


def scene_items(
    encoder: ClipEncoder, count: int, seed: int
) -> tuple[list[dict[str, Any]], dict[str, GroundTruth]]:
    """``count`` scenes as prepared item documents (ids ``scene-NNNN``), and their truth."""
    scenes = list(generate(count, seed))
    vectors = torch.cat(
        [
            encoder.encode_images(
                torch.stack([encoder.preprocessor(image) for image, _ in scenes[i : i + 128]])
            )
            for i in range(0, count, 128)
        ]
    ).numpy()
    items, truth = [], {}
    for n, ((_, scene), vector) in enumerate(zip(scenes, vectors, strict=True)):
        item_id = f"scene-{n:04d}"
        truth[item_id] = scene
        images = [
            {"id": f"{n}-{tag}", "label": tag, "score": 0.9, "training_set": "truth"}
            for tag in sorted(scene.tags)
        ]
        objects = [
            {
                "id": f"{n}-o{i}",
                "label": label,
                "score": 0.3 + 0.1 * (i % 7),
                "training_set": "truth",
                "bbox": dict(zip(("x1", "y1", "x2", "y2"), box, strict=True)),
                "status": "rejected" if i == 2 else "pending",
            }
            for i, (label, box) in enumerate(scene.objects)
        ]
        items.append(
            prepare_item(
                {
                    "item_id": item_id,
                    "dataset": "world" if n % 2 else "other",
                    f.EMBEDDING: vector.tolist(),
                    "image_predictions": images,
                    "object_predictions": objects,
                }
            )
        )
    return items, truth
