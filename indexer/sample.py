"""A small, deterministic sample of predicted items for the demo and for trying queries.

Driving-scene labels as on the product page, two training sets, a share already reviewed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from store.writer import ItemPredictions

WEATHER = ("weather_clear", "weather_rain", "weather_snow", "weather_fog")
TIME_OF_DAY = ("time_of_day_day", "time_of_day_night")
SCENE = ("scene_highway", "scene_urban", "scene_rural")
OBJECTS = ("car", "car_suv", "car_truck", "pedestrian", "traffic_sign_stop", "traffic_light")
TRAINING_SETS = ("model_v1", "model_v2")
REVIEW_OUTCOMES = ("accepted", "accepted", "accepted", "rejected", "modified")


def _score(rng: random.Random, correct: bool) -> float:
    return round(rng.uniform(0.45, 1.0) if correct else rng.uniform(-1.0, 0.6), 3)


def sample_items(
    count: int = 200, seed: int = 7, training_set: str = "model_v2"
) -> Iterator[ItemPredictions]:
    """``count`` items with the predictions ``training_set`` made for them."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    model_rng = random.Random(f"{seed}:{training_set}")
    for n in range(count):
        world = random.Random(f"{seed}:{n}")  # the same scene whatever the model
        truth = {world.choice(group) for group in (WEATHER, TIME_OF_DAY, SCENE)}
        item = {
            "item_id": f"sample-{n:05d}",
            "dataset": "sample_drives",
            "uri": f"file:///sample/drive_{n:05d}.jpg",
            "width": 1280,
            "height": 720,
            "uploaded_at": (start + timedelta(hours=7 * n)).isoformat().replace("+00:00", "Z"),
            "metadata": {"city": world.choice(("Oslo", "Lyon", "Austin")), "camera": n % 4},
        }
        reviewed = model_rng.random() < 0.3
        images = [
            {"label": label, "score": _score(model_rng, label in truth), "model": "clip-demo"}
            for label in (*WEATHER, *TIME_OF_DAY, *SCENE)
        ]
        objects = []
        for _ in range(world.randint(0, 6)):
            x, y = world.uniform(0, 1100), world.uniform(0, 600)
            objects.append(
                {
                    "label": world.choice(OBJECTS),
                    "score": round(model_rng.uniform(0.3, 1.0), 3),
                    "model": "detector-demo",
                    "bbox": {
                        "x1": round(x, 1),
                        "y1": round(y, 1),
                        "x2": round(x + world.uniform(20, 180), 1),
                        "y2": round(y + world.uniform(20, 120), 1),
                    },
                }
            )
        if reviewed:
            for prediction in images:
                prediction["status"] = model_rng.choice(("accepted", "accepted", "rejected"))
            for prediction in objects:
                prediction["status"] = model_rng.choice(REVIEW_OUTCOMES)
                if prediction["status"] == "modified":  # a reviewer relabelled it
                    prediction["original_label"] = prediction["label"]
                    prediction["label"] = model_rng.choice(OBJECTS)
        yield ItemPredictions(item=item, image_predictions=images, object_predictions=objects)
