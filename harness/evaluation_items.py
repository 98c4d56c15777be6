"""Generated items for evaluating model versions: ground truth from source ``gt`` and two
training sets of a detector, ``v1`` (finds 75% of the truth, more box jitter) and ``v2``
(85%), a fifth of the predictions reviewed. Shared by ``bench/evaluate.py`` and the tests.
"""

from __future__ import annotations

import random
from typing import Any

from store.documents import prepare_item

LABELS = ("car", "pedestrian", "traffic_sign", "cyclist", "truck")
TAGS = ("weather_clear", "weather_rain", "weather_snow")
SETS = {"v1": (0.75, 0.12), "v2": (0.85, 0.06)}  # (detection rate, box jitter)


def _box(rng: random.Random) -> dict[str, float]:
    x, y = rng.uniform(0, 560), rng.uniform(0, 400)
    return {"x1": x, "y1": y, "x2": x + rng.uniform(12, 80), "y2": y + rng.uniform(12, 80)}


def _jitter(rng: random.Random, box: dict[str, float], amount: float) -> dict[str, float]:
    w, h = box["x2"] - box["x1"], box["y2"] - box["y1"]
    dx, dy = rng.gauss(0, amount * w), rng.gauss(0, amount * h)
    return {"x1": box["x1"] + dx, "y1": box["y1"] + dy, "x2": box["x2"] + dx, "y2": box["y2"] + dy}


def item(rng: random.Random, n: int) -> dict[str, Any]:
    boxes = [(rng.choice(LABELS), _box(rng)) for _ in range(rng.randint(0, 6))]
    truth = [{"label": label, "bbox": box, "source": "gt"} for label, box in boxes]
    tag = rng.choice(TAGS)
    objects: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    for name, (rate, jitter) in SETS.items():
        found = [(label, _jitter(rng, box, jitter), True) for label, box in boxes
                 if rng.random() < rate]  # fmt: skip
        found += [(rng.choice(LABELS), _box(rng), False) for _ in range(rng.randint(0, 2))]
        for label, box, real in found:
            score = min(1.0, max(0.0, rng.gauss(0.75 if real else 0.35, 0.2)))
            status = "pending"
            if rng.random() < 0.2:
                status = "accepted" if (real and rng.random() < 0.9) else "rejected"
            objects.append({"id": f"{name}-{len(objects)}", "label": label, "score": score,
                            "training_set": name, "status": status, "bbox": box})  # fmt: skip
        for other in TAGS:
            score = rng.gauss(0.7 if other == tag else -0.3, 0.3)
            images.append({"id": f"{name}-t-{other}", "label": other,
                           "score": min(1.0, max(-1.0, score)), "training_set": name})  # fmt: skip
    return prepare_item(
        {
            "item_id": f"bench-{n:08d}",
            "tagged_by": list(SETS),
            "truth_source": ["gt"],
            "truth_objects": truth,
            "truth_images": [{"label": tag, "source": "gt"}],
            "object_predictions": objects,
            "image_predictions": images,
        }
    )
