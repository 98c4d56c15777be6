"""Realistic synthetic predictions at any scale, without images, for benchmarks and load tests.

Items get 3 to 30 predictions, image-level and object-level, with labels drawn from a skewed
(Zipf-like) driving taxonomy, several training sets, scores spread over every band of the
product page and a share already reviewed. Streamed and deterministic: item ``n`` of seed ``s``
is the same on every run, and memory does not grow with ``count``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate

from store.writer import ItemPredictions

IMAGE_LABELS: tuple[str, ...] = (
    "weather_clear", "time_of_day_day", "scene_urban", "scene_highway", "weather_rain",
    "time_of_day_night", "scene_rural", "weather_fog", "weather_snow", "road_wet",
    "road_construction", "lighting_glare", "tunnel", "bridge", "parking_lot",
)  # fmt: skip
OBJECT_LABELS: tuple[str, ...] = (
    "car", "pedestrian", "car_suv", "traffic_light", "traffic_sign_stop", "car_truck",
    "cyclist", "car_bus", "traffic_sign_yield", "motorcycle", "traffic_cone", "animal_dog",
    "traffic_sign_speed_limit", "stroller", "cargo_ship", "animal_deer", "wheelchair",
    "scooter", "train", "debris",
)  # fmt: skip
TRAINING_SETS: tuple[str, ...] = ("model_v1", "model_v2", "detector_2025_01")
REVIEW_SHARE = 0.2


@dataclass(frozen=True)
class _Zipf:
    """Draws from ``labels`` with weight 1/rank^s: the first labels are by far most common."""

    labels: Sequence[str]
    cumulative: Sequence[float]

    @classmethod
    def over(cls, labels: Sequence[str], s: float = 1.1) -> _Zipf:
        return cls(labels, list(accumulate(1 / (rank**s) for rank in range(1, len(labels) + 1))))

    def draw(self, rng: random.Random) -> str:
        return rng.choices(self.labels, cum_weights=self.cumulative)[0]


_IMAGE = _Zipf.over(IMAGE_LABELS)
_OBJECT = _Zipf.over(OBJECT_LABELS)


def _score(rng: random.Random) -> float:
    band = rng.random()
    if band < 0.35:
        return round(rng.uniform(0.8, 1.0), 3)
    if band < 0.6:
        return round(rng.uniform(0.5, 0.8), 3)
    if band < 0.85:
        return round(rng.uniform(0.0, 0.5), 3)
    return round(rng.uniform(-1.0, 0.0), 3)


def _review(rng: random.Random, prediction: dict[str, object], labels: Sequence[str]) -> None:
    outcome = rng.choice(("accepted", "accepted", "accepted", "rejected", "modified"))
    prediction["status"] = outcome
    if outcome == "modified":
        prediction["original_label"] = prediction["label"]
        prediction["label"] = rng.choice(labels)


def generate_item(n: int, seed: int = 0) -> ItemPredictions:
    """Item number ``n``: its fields and predictions from every training set."""
    rng = random.Random(seed * 1_000_003 + n)
    uploaded = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randrange(63_072_000))
    item = {
        "item_id": f"item-{n:09d}",
        "dataset": f"drives_{n % 7}",
        "uri": f"s3://autotag-scale/{n % 1000:03d}/{n:09d}.jpg",
        "width": 1920,
        "height": 1080,
        "uploaded_at": uploaded.isoformat().replace("+00:00", "Z"),
        "metadata": {"city": rng.choice(("Oslo", "Lyon", "Austin", "Osaka")), "camera": n % 8},
    }
    reviewed = rng.random() < REVIEW_SHARE
    total = rng.randint(3, 30)
    images: list[dict[str, object]] = []
    objects: list[dict[str, object]] = []
    for _ in range(total):
        training_set = rng.choice(TRAINING_SETS)
        if rng.random() < 0.35:
            prediction: dict[str, object] = {
                "label": _IMAGE.draw(rng), "score": _score(rng), "model": "clip-vit-b32",
                "training_set": training_set,
            }  # fmt: skip
            labels: Sequence[str] = IMAGE_LABELS
            images.append(prediction)
        else:
            x, y = rng.uniform(0, 1800), rng.uniform(0, 1000)
            prediction = {
                "label": _OBJECT.draw(rng), "score": round(abs(_score(rng)), 3),
                "model": "frcnn-mnv3", "training_set": training_set,
                "bbox": {"x1": round(x, 1), "y1": round(y, 1),
                         "x2": round(x + rng.uniform(10, 120), 1),
                         "y2": round(y + rng.uniform(10, 80), 1)},
            }  # fmt: skip
            labels = OBJECT_LABELS
            objects.append(prediction)
        prediction["id"] = f"{n:x}-{len(images) + len(objects)}"
        prediction["created_at"] = item["uploaded_at"]
        if reviewed:
            _review(rng, prediction, labels)
    return ItemPredictions(item=item, image_predictions=images, object_predictions=objects)


def generate(count: int, seed: int = 0, start: int = 0) -> Iterator[ItemPredictions]:
    """Items ``start`` .. ``start + count - 1``, one at a time."""
    for n in range(start, start + count):
        yield generate_item(n, seed)
