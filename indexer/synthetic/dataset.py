"""Write a synthetic dataset to disk (PNGs, a manifest, the ground truth) and read it back."""

from __future__ import annotations

import json
from pathlib import Path

from indexer.synthetic.world import DEFAULT_SIZE, GroundTruth, generate

GROUND_TRUTH_FILE = "ground_truth.jsonl"
MANIFEST_FILE = "manifest.jsonl"


def item_id(seed: int, index: int) -> str:
    return f"synthetic-{seed}-{index:06d}"


def write_dataset(
    folder: Path,
    n: int,
    seed: int,
    *,
    dataset: str = "synthetic",
    size: tuple[int, int] = DEFAULT_SIZE,
) -> Path:
    """Write ``n`` scenes as ``images/<item_id>.png`` plus ``manifest.jsonl`` (item_id, uri,
    dataset, metadata) and ``ground_truth.jsonl`` (item_id, tags, objects); returns the
    ground-truth path."""
    folder = Path(folder)
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    truth_path = folder / GROUND_TRUTH_FILE
    with (
        truth_path.open("w", encoding="utf-8") as truth_out,
        (folder / MANIFEST_FILE).open("w", encoding="utf-8") as manifest_out,
    ):
        for index, (image, truth) in enumerate(generate(n, seed, size=size)):
            key = item_id(seed, index)
            path = images / f"{key}.png"
            image.save(path)
            manifest = {
                "item_id": key,
                "uri": str(path.resolve()),
                "dataset": dataset,
                "metadata": {"seed": seed, "index": index},
            }
            manifest_out.write(json.dumps(manifest) + "\n")
            record = {
                "item_id": key,
                "file": f"images/{key}.png",
                "tags": sorted(truth.tags),
                "objects": [{"label": label, "bbox": list(box)} for label, box in truth.objects],
            }
            truth_out.write(json.dumps(record) + "\n")
    return truth_path


def read_ground_truth(path: Path) -> dict[str, GroundTruth]:
    """``ground_truth.jsonl`` -> ground truth by item id."""
    result: dict[str, GroundTruth] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        objects = tuple(
            (
                str(o["label"]),
                (
                    float(o["bbox"][0]),
                    float(o["bbox"][1]),
                    float(o["bbox"][2]),
                    float(o["bbox"][3]),
                ),
            )
            for o in record["objects"]
        )
        result[record["item_id"]] = GroundTruth(tags=frozenset(record["tags"]), objects=objects)
    return result
