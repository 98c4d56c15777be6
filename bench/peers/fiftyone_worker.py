"""The FiftyOne side of the peer benchmark; runs in FiftyOne's own virtualenv, not the product's.

Started by ``bench/peers/run.py`` with the virtualenv's Python and ``FIFTYONE_DATABASE_URI``
pointing at a ``mongod`` that the benchmark runs. It imports nothing of autotag: commands come
as JSON lines on stdin, answers go as JSON lines to stdout, logs to stderr.

The five product-page queries are written here the way a FiftyOne user writes them: ViewField
expressions in ``match`` (``viewfield``), and, to give MongoDB its best indexes, the same
conditions as a query-language ``$elemMatch`` through ``Dataset.mongo`` (``elemmatch``), which
a multikey index on the label can serve. Autotag's semantics are followed exactly: a prefix
``p`` is the label ``p`` or a label starting ``p_``; rejected predictions are invisible.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import fiftyone as fo  # type: ignore[import-not-found,unused-ignore]
from bson import ObjectId  # type: ignore[import-not-found,unused-ignore]
from fiftyone import ViewField as F  # type: ignore[import-not-found,unused-ignore]

IMAGES = "image_predictions"
OBJECTS = "object_predictions"
IMAGE_LIST = f"{IMAGES}.classifications"
OBJECT_LIST = f"{OBJECTS}.detections"


# --- the queries, FiftyOne's way -----------------------------------------------------------------


def _prefix(p: str) -> Any:
    return (F("label") == p) | F("label").starts_with(p + "_")


def _visible() -> Any:
    return F("status") != "rejected"


def _some(path: str, condition: Any) -> Any:
    return F(path).filter(condition & _visible()).length() > 0


def _mql_prefix(p: str) -> dict[str, Any]:
    return {"$or": [{"label": p}, {"label": {"$regex": f"^{p}_"}}]}


def _mql_some(path: str, *conditions: dict[str, Any]) -> dict[str, Any]:
    return {path: {"$elemMatch": {"$and": [*conditions, {"status": {"$ne": "rejected"}}]}}}


VIEWFIELD: dict[str, Callable[[], Any]] = {
    "image_prefix:weather_clear AND score >= 0.8": lambda: _some(
        IMAGE_LIST, _prefix("weather_clear") & (F("confidence") >= 0.8)
    ),
    "object_prefix:car AND score < 0.5": lambda: _some(
        OBJECT_LIST, _prefix("car") & (F("confidence") < 0.5)
    ),
    'training_set = "model_v2"': lambda: (
        _some(IMAGE_LIST, F("training_set") == "model_v2")
        | _some(OBJECT_LIST, F("training_set") == "model_v2")
    ),
    # autotag stores the item's status as a list of keywords (``reviewed`` + ``accepted``).
    'autotag_status = "pending"': lambda: F("autotag_status").contains("pending"),
    'object_prefix:pedestrian AND score >= 0.8 AND training_set = "model_v2"': lambda: _some(
        OBJECT_LIST,
        _prefix("pedestrian") & (F("confidence") >= 0.8) & (F("training_set") == "model_v2"),
    ),
}


def _best(path: str, condition: Any) -> Any:
    """The best confidence among a list's visible predictions meeting ``condition``."""
    return F(path).filter(condition & _visible()).map(F("confidence")).max()


def _best_any(path: str) -> Any:
    return F(path).filter(_visible()).map(F("confidence")).max()


# autotag's default order: the best score among the predictions the query matched (image
# predictions first, then objects, where a query matches both), missing last, then item id.
BEST: dict[str, Callable[[], list[Any]]] = {
    "image_prefix:weather_clear AND score >= 0.8": lambda: [
        _best(IMAGE_LIST, _prefix("weather_clear") & (F("confidence") >= 0.8))
    ],
    "object_prefix:car AND score < 0.5": lambda: [
        _best(OBJECT_LIST, _prefix("car") & (F("confidence") < 0.5))
    ],
    'training_set = "model_v2"': lambda: [
        _best(IMAGE_LIST, F("training_set") == "model_v2"),
        _best(OBJECT_LIST, F("training_set") == "model_v2"),
    ],
    'autotag_status = "pending"': lambda: [_best_any(IMAGE_LIST), _best_any(OBJECT_LIST)],
    'object_prefix:pedestrian AND score >= 0.8 AND training_set = "model_v2"': lambda: [
        _best(
            OBJECT_LIST,
            _prefix("pedestrian") & (F("confidence") >= 0.8) & (F("training_set") == "model_v2"),
        )
    ],
}
ELEMMATCH: dict[str, Callable[[], dict[str, Any]]] = {
    "image_prefix:weather_clear AND score >= 0.8": lambda: _mql_some(
        IMAGE_LIST, _mql_prefix("weather_clear"), {"confidence": {"$gte": 0.8}}
    ),
    "object_prefix:car AND score < 0.5": lambda: _mql_some(
        OBJECT_LIST, _mql_prefix("car"), {"confidence": {"$lt": 0.5}}
    ),
    'training_set = "model_v2"': lambda: {
        "$or": [
            _mql_some(IMAGE_LIST, {"training_set": "model_v2"}),
            _mql_some(OBJECT_LIST, {"training_set": "model_v2"}),
        ]
    },
    'autotag_status = "pending"': lambda: {"autotag_status": "pending"},
    'object_prefix:pedestrian AND score >= 0.8 AND training_set = "model_v2"': lambda: _mql_some(
        OBJECT_LIST,
        _mql_prefix("pedestrian"),
        {"confidence": {"$gte": 0.8}},
        {"training_set": "model_v2"},
    ),
}
VARIANTS = ("viewfield", "elemmatch")
# The best indexes we found for these queries (FiftyOne adds ``filepath`` and ``id`` itself).
INDEXES: tuple[str | list[tuple[str, int]], ...] = (
    "item_id",
    [("uploaded_at", -1), ("item_id", 1)],
    "autotag_status",
    [(f"{IMAGE_LIST}.label", 1), (f"{IMAGE_LIST}.confidence", 1)],
    [(f"{OBJECT_LIST}.label", 1), (f"{OBJECT_LIST}.confidence", 1)],
    f"{IMAGE_LIST}.training_set",
    f"{OBJECT_LIST}.training_set",
)
# Page orders as autotag's ``item_id`` (asc) and ``uploaded_at`` (desc, then item id).
PAGE_ORDERS: dict[str, list[tuple[str, int]]] = {
    "item_id": [("item_id", 1)],
    "uploaded_at": [("uploaded_at", -1), ("item_id", 1)],
}


def view_of(dataset: Any, query: str, variant: str) -> Any:
    if variant == "viewfield":
        return dataset.match(VIEWFIELD[query]())
    return dataset.mongo([{"$match": ELEMMATCH[query]()}])


# --- loading --------------------------------------------------------------------------------------


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def sample_of(doc: dict[str, Any]) -> Any:
    """An autotag item document (as stored) as a FiftyOne sample."""
    width, height = doc.get("width") or 1, doc.get("height") or 1

    def attrs(p: dict[str, Any]) -> dict[str, Any]:
        return {
            "label": p["label"],
            "confidence": p["score"],
            "training_set": p["training_set"],
            "status": p["status"],
            "model": p["model"],
            "pred_id": p["id"],
        }

    classifications = [fo.Classification(**attrs(p)) for p in doc.get(IMAGES) or ()]
    detections = []
    for p in doc.get(OBJECTS) or ():
        box = p["bbox"]
        x, y = box["x1"] / width, box["y1"] / height
        w, h = (box["x2"] - box["x1"]) / width, (box["y2"] - box["y1"]) / height
        detections.append(fo.Detection(bounding_box=[x, y, w, h], **attrs(p)))
    return fo.Sample(
        filepath=f"/data/{doc['item_id']}.jpg",
        item_id=doc["item_id"],
        dataset_name=doc["dataset"],  # ``dataset`` is taken by FiftyOne
        uploaded_at=_when(doc["uploaded_at"]),
        autotag_status=doc["autotag_status"],
        **{
            IMAGES: fo.Classifications(classifications=classifications),
            OBJECTS: fo.Detections(detections=detections),
        },
    )


class _Incoming:
    """The ``count`` documents that follow a ``load`` command on stdin."""

    def __init__(self, count: int) -> None:
        self.left = count

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while self.left:
            self.left -= 1
            yield json.loads(sys.stdin.buffer.readline())

    def drain(self) -> None:
        """Read what is left, so that the next line read is a command again."""
        for _ in self:
            pass


def _chunks(docs: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for doc in docs:
        chunk.append(doc)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def mongo_doc_of(doc: dict[str, Any], bookkeeping: dict[str, Any]) -> dict[str, Any]:
    """The document ``add_samples`` writes for ``sample_of(doc)``, built without FiftyOne's
    objects (checked against FiftyOne's own for the first batch, see ``load``)."""
    width, height = doc.get("width") or 1, doc.get("height") or 1

    def label(cls: str, p: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {
            "_id": ObjectId(), "_cls": cls, "tags": [], **more, "label": p["label"],
            "confidence": p["score"], "training_set": p["training_set"],
            "status": p["status"], "model": p["model"], "pred_id": p["id"],
        }  # fmt: skip

    detections = []
    for p in doc.get(OBJECTS) or ():
        box = p["bbox"]
        x, y = box["x1"] / width, box["y1"] / height
        w, h = (box["x2"] - box["x1"]) / width, (box["y2"] - box["y1"]) / height
        detections.append(label("Detection", p, attributes={}, bounding_box=[x, y, w, h]))
    return {
        "_id": ObjectId(),
        "filepath": f"/data/{doc['item_id']}.jpg",
        "tags": [],
        "_media_type": "image",
        "_rand": random.random() * 0.001 + 0.999,  # FiftyOne's own range for _rand
        "item_id": doc["item_id"],
        "dataset_name": doc["dataset"],
        "uploaded_at": _when(doc["uploaded_at"]).replace(tzinfo=None),
        "autotag_status": doc["autotag_status"],
        IMAGES: {
            "_cls": "Classifications",
            "classifications": [label("Classification", p) for p in doc.get(IMAGES) or ()],
        },
        OBJECTS: {"_cls": "Detections", "detections": detections},
        **bookkeeping,
    }


def _shape(value: Any) -> Any:
    """A document's structure and values, less what differs between any two writes."""
    if isinstance(value, dict):
        return {
            k: _shape(v)
            for k, v in value.items()
            if k not in ("_id", "_rand", "created_at", "last_modified_at")
        }
    if isinstance(value, list):
        return [_shape(v) for v in value]
    if isinstance(value, float):
        return round(value, 9)
    return value


def load(name: str, count: int, mode: str, batch: int) -> dict[str, Any]:
    """Load ``count`` documents read from stdin; the seconds spent in FiftyOne or pymongo only.

    ``api``: ``Dataset.add_samples``. ``raw``: the first batch through ``add_samples`` (it
    declares the schema), the rest as the documents ``add_samples`` would write
    (``mongo_doc_of``, checked equal to FiftyOne's own on that first batch) through pymongo's
    ``insert_many`` on the dataset's collection.
    """
    incoming = _Incoming(count)
    try:
        return _load(name, incoming, mode, batch)
    finally:
        incoming.drain()


def _load(name: str, incoming: _Incoming, mode: str, batch: int) -> dict[str, Any]:
    if fo.dataset_exists(name):
        fo.delete_dataset(name)
    dataset = fo.Dataset(name, persistent=True)
    collection = dataset._sample_collection
    spent = 0.0
    bookkeeping: dict[str, Any] | None = None
    for chunk in _chunks(iter(incoming), batch):
        if mode == "api" or bookkeeping is None:
            samples = [sample_of(doc) for doc in chunk]
            started = time.perf_counter()
            dataset.add_samples(samples, progress=False)
            spent += time.perf_counter() - started
            if bookkeeping is None:
                written = collection.find_one({"item_id": chunk[0]["item_id"]})
                bookkeeping = {
                    key: written[key] for key in ("_dataset_id", "created_at", "last_modified_at")
                }
                if _shape(mongo_doc_of(chunk[0], bookkeeping)) != _shape(written):
                    raise RuntimeError(f"raw documents differ from FiftyOne's: {written}")
            continue
        started = time.perf_counter()
        collection.insert_many([mongo_doc_of(doc, bookkeeping) for doc in chunk], ordered=False)
        spent += time.perf_counter() - started
    return {"seconds": spent, "count": dataset.count()}


def create_indexes(name: str) -> dict[str, Any]:
    dataset = fo.load_dataset(name)
    started = time.perf_counter()
    for spec in INDEXES:
        dataset.create_index(spec)
    return {"seconds": time.perf_counter() - started, "indexes": sorted(dataset.list_indexes())}


# --- timing ---------------------------------------------------------------------------------------


def run_once(dataset: Any, query: str, variant: str, what: str) -> Any:
    view = view_of(dataset, query, variant)
    if what == "count":
        return view.count()
    return _page(view, query, what).values("item_id")


def _page(view: Any, query: str, what: str) -> Any:
    if what == "page_score":
        keys = [(expression, -1) for expression in BEST[query]()]
        return view.sort_by([*keys, ("item_id", 1)], create_index=False).limit(20)
    return view.sort_by(PAGE_ORDERS[what.removeprefix("page_")]).limit(20)


def timed(name: str, query: str, variant: str, what: str, repeats: int) -> dict[str, Any]:
    dataset = fo.load_dataset(name)
    samples = []
    result = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run_once(dataset, query, variant, what)
        samples.append((time.perf_counter() - started) * 1000)
    return {"ms": samples, "result": result, "median": statistics.median(samples)}


def all_ids(name: str, query: str, variant: str) -> dict[str, Any]:
    dataset = fo.load_dataset(name)
    return {"ids": view_of(dataset, query, variant).values("item_id")}


def clear_caches(name: str) -> dict[str, Any]:
    """MongoDB caches query plans, never results: drop the plans of the samples collection."""
    dataset = fo.load_dataset(name)
    collection = dataset._sample_collection
    collection.database.command({"planCacheClear": collection.name})
    return {}


def explain(name: str, query: str, variant: str, what: str) -> dict[str, Any]:
    """The winning plan's stages, to say which index a page used."""
    dataset = fo.load_dataset(name)
    view = view_of(dataset, query, variant)
    if what != "count":
        view = _page(view, query, what)
    pipeline = view._pipeline()
    collection = dataset._sample_collection
    plan = collection.database.command(
        "explain",
        {"aggregate": collection.name, "pipeline": pipeline, "cursor": {}},
        verbosity="queryPlanner",
    )
    return {"plan": json.loads(json.dumps(plan, default=str))}


def status(name: str) -> dict[str, Any]:
    if not fo.dataset_exists(name):
        return {"count": 0}
    return {"count": fo.load_dataset(name).count()}


def main() -> int:
    handlers: dict[str, Callable[..., dict[str, Any]]] = {
        "status": status,
        "load": load,
        "indexes": create_indexes,
        "time": timed,
        "ids": all_ids,
        "clear_caches": clear_caches,
        "explain": explain,
    }
    print(json.dumps({"ready": fo.__version__}), flush=True)
    for line in sys.stdin.buffer:
        request = json.loads(line)
        command = request.pop("cmd")
        if command == "quit":
            break
        try:
            answer = handlers[command](**request)
        except Exception as exc:  # reported to the driver, which stops the run
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(answer, default=str), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
