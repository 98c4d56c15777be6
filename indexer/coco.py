"""Reading COCO files, for prediction imports (detection results with an images file) and
ground-truth imports (an instances file) alike: the categories, and the walk of the image list
that makes one item of every listed image from what the file's records said of its image id."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from indexer.report import Failure
from indexer.sources import item_id_for
from store import schema as f
from store.writer import ItemPredictions

if TYPE_CHECKING:  # the importer reads COCO through this module
    from indexer.importer import LabelPolicy


def categories(data: Mapping[str, Any]) -> dict[Any, str]:
    """Category id -> name, of the well-formed entries of the file's ``categories``."""
    return {
        c["id"]: str(c["name"])
        for c in data.get("categories") or ()
        if isinstance(c, dict) and "id" in c and "name" in c
    }


@dataclass
class ByImage:
    """What the records (results or annotations) said of each image id: the boxes kept, the
    first reason its item fails, and the labels counted for it, added to the batch's counts
    only once its item is written."""

    boxes: dict[Any, list[dict[str, Any]]] = field(default_factory=dict)
    failed: dict[Any, str] = field(default_factory=dict)
    labels: dict[Any, LabelPolicy] = field(default_factory=dict)

    def items(
        self,
        images: list[Any],
        *,
        file_name: str,
        dataset: str | None,
        labels: LabelPolicy,
        records: str,
    ) -> list[ItemPredictions | Failure]:
        """One entry per listed image (``DATASET/file_name`` ids), with its boxes, or its
        failure; then a failure per image id that records name but the list lacks, counting its
        ``records`` (a failed one among them). ``labels`` gets each
        written item's label counts."""
        entries: list[ItemPredictions | Failure] = []
        seen: set[str] = set()
        listed: set[Any] = set()
        for image in images:
            if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
                entries.append(Failure(None, None, "source", f"{file_name}: bad image entry"))
                continue
            name = str(image["file_name"])
            item_id = item_id_for(dataset, name)
            if item_id in seen:
                entries.append(Failure(item_id, name, "source", "duplicate item id"))
                continue
            seen.add(item_id)
            listed.add(image["id"])
            if image["id"] in self.failed:
                entries.append(Failure(item_id, name, "source", self.failed[image["id"]]))
                continue
            item: dict[str, Any] = {f.ITEM_ID: item_id, f.URI: name}
            if dataset is not None:
                item[f.DATASET] = dataset
            for side in (f.WIDTH, f.HEIGHT):
                if isinstance(image.get(side), int):
                    item[side] = image[side]
            entries.append(ItemPredictions(item, (), self.boxes.get(image["id"], [])))
            if image["id"] in self.labels:
                labels.merge(self.labels[image["id"]])
        for image_id in sorted(set(self.boxes) | set(self.failed), key=str):
            if image_id not in listed:
                count = len(self.boxes.get(image_id, ())) + (image_id in self.failed)
                reason = f"{count} {records}(s) for image id {image_id} not in the image list"
                entries.append(Failure(None, None, "source", reason))
        return entries
