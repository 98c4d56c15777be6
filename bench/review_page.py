"""The review page's figures: grid drawn in the browser, thumbnail throughput, bulk review rate.

    ES_URL=http://127.0.0.1:9200 .venv/bin/python -m bench.review_page --browser
    ES_URL=... .venv/bin/python -m bench.review_page --thumbnails 200
    ES_URL=... .venv/bin/python -m bench.review_page --bulk 100000

``--browser``: the review page in Debian's Chromium against the real app (served in this
process) and a world of 60 synthetic scenes (``harness.review_world``); submits a 50-hit query
and times submit → every thumbnail of the grid decoded, ``--rounds`` times. The first round is
cold (no thumbnail made yet: the server decodes and resizes all 50), later rounds warm (the
same items under a new query text each time, thumbnails cached on the server and in the
browser).

``--thumbnails N``: N synthetic scenes written as ``--size`` JPEGs (1280x720 by default, a
dashcam frame), their items in a fresh index; then every thumbnail fetched over HTTP from a
uvicorn server at ``--concurrency``: cold (empty thumbnail cache: decode, resize, encode,
write), warm (from the disk cache) and revalidated (``If-None-Match``: 304). Prints
thumbnails/s.

``--bulk N``: items holding N pending car predictions (four per item, beside other labels and
reviewed ones) in a fresh index; times the dry run and the run of ``api.bulk_review`` (the
code behind ``POST /v1/review-by-query``) accepting them. Prints predictions/s. Run it under
the shared lock.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from elasticsearch import AsyncElasticsearch, Elasticsearch

from api import bulk_review
from api.app import create_app
from api.models import ReviewAction
from api.query import parse_query
from api.settings import Settings
from harness.browser import chromium, served
from harness.review_world import make_world
from indexer.synthetic.world import generate
from store.connection import connect, node_urls, serializers
from store.documents import prepare_item
from store.image_roots import record_image_roots, roots_index_name
from store.mapping import index_settings, item_mapping
from store.settings import StoreSettings


@contextmanager
def fresh_index(es: Elasticsearch, prefix: str) -> Iterator[str]:
    index = f"{prefix}-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
    try:
        yield index
    finally:
        es.indices.delete(index=index, ignore_unavailable=True)
        es.indices.delete(index=roots_index_name(index), ignore_unavailable=True)


# --- the grid in the browser -----------------------------------------------------------------

GRID_DONE = """() => {
    const imgs = [...document.querySelectorAll('#grid a.card img')];
    return imgs.length === 50 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def browser_figures(es: Elasticsearch, url: str, rounds: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-page-"))
    with fresh_index(es, "bench-page") as index:
        make_world(es, index, folder / "world")
        settings = Settings(es_url=url, index=index, cache=folder / "cache")
        with served(create_app(settings)) as base, chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(base + "/#" + urlencode({"q": 'item_id = "none"'}))
            page.wait_for_function("() => document.body.dataset.gridDrawnMs !== undefined")
            times = []
            for n in range(rounds):
                # A new query text each round: only the thumbnails can be reused.
                extra = " AND width > 0" * n
                page.fill("#q", f'autotag_status = "pending" AND dataset = "drives"{extra}')
                started = page.evaluate("() => performance.now()")
                page.press("#q", "Enter")
                page.wait_for_function(GRID_DONE, timeout=60_000)
                times.append(page.evaluate("() => performance.now()") - started)
    shutil.rmtree(folder, ignore_errors=True)
    warm = times[1:]
    print("query submitted -> 50 thumbnails drawn in Chromium (ms)")
    print(f"  cold (thumbnails made on demand): {times[0]:.0f}")
    if warm:
        print(
            f"  warm: median {statistics.median(warm):.0f}, min {min(warm):.0f}, "
            f"max {max(warm):.0f} over {len(warm)} rounds"
        )


# --- thumbnail throughput --------------------------------------------------------------------


def write_frames(folder: Path, count: int, size: tuple[int, int]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, (image, _) in enumerate(generate(count, seed=17, size=size)):
        path = folder / f"frame-{n:05d}.jpg"
        image.save(path, format="JPEG", quality=90)
        paths.append(path)
    return paths


async def fetch_all(
    base: str, ids: list[str], concurrency: int, headers: dict[str, str] | None = None
) -> tuple[float, list[httpx.Response]]:
    queue = list(ids)
    answers: list[httpx.Response] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def worker() -> None:
            while queue:
                item_id = queue.pop()
                answers.append(
                    await client.get(f"/v1/items/{item_id}/thumbnail", headers=headers or {})
                )

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, answers


def thumbnail_figures(
    es: Elasticsearch, url: str, count: int, size: tuple[int, int], concurrency: int
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="bench-thumbs-"))
    started = time.perf_counter()
    paths = write_frames(folder / "frames", count, size)
    print(f"wrote {count} {size[0]}x{size[1]} JPEG frames in {time.perf_counter() - started:.1f}s")
    with fresh_index(es, "bench-thumbs") as index:
        operations: list[dict[str, Any]] = []
        for n, path in enumerate(paths):
            operations.append({"index": {"_index": index, "_id": f"f{n}"}})
            doc = {"item_id": f"f{n}", "uri": str(path), "width": size[0], "height": size[1]}
            operations.append(prepare_item(doc))
        es.bulk(operations=operations, refresh=True)
        record_image_roots(es, index, [folder / "frames"])
        settings = Settings(es_url=url, index=index, cache=folder / "cache")
        ids = [f"f{n}" for n in range(count)]
        with served(create_app(settings)) as base:
            cold, answers = asyncio.run(fetch_all(base, ids, concurrency))
            assert all(a.status_code == 200 for a in answers), answers[0].text
            tags = {str(a.url).split("/")[-2]: a.headers["etag"] for a in answers}
            warm, answers = asyncio.run(fetch_all(base, ids, concurrency))
            assert all(a.status_code == 200 for a in answers)
            revalidated, answers = asyncio.run(fetch_all_revalidating(base, ids, concurrency, tags))
            assert all(a.status_code == 304 for a in answers)
    shutil.rmtree(folder, ignore_errors=True)
    print(f"thumbnails of {count} {size[0]}x{size[1]} JPEGs, {concurrency} at a time:")
    print(f"  cold (decode, resize, encode, cache): {count / cold:.1f}/s ({cold:.2f}s)")
    print(f"  warm (from the disk cache):           {count / warm:.1f}/s ({warm:.2f}s)")
    print(f"  revalidated (If-None-Match, 304):     {count / revalidated:.1f}/s")


async def fetch_all_revalidating(
    base: str, ids: list[str], concurrency: int, tags: dict[str, str]
) -> tuple[float, list[httpx.Response]]:
    queue = list(ids)
    answers: list[httpx.Response] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=120) as client:

        async def worker() -> None:
            while queue:
                item_id = queue.pop()
                headers = {"If-None-Match": tags[item_id]}
                answers.append(await client.get(f"/v1/items/{item_id}/thumbnail", headers=headers))

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, answers


# --- bulk review -----------------------------------------------------------------------------

BULK_QUERY = "object_prefix:car AND score >= 0.5"
PER_ITEM = 4


def bulk_items(predictions: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    """Items with PER_ITEM pending cars scoring >= 0.5 each, and others the query leaves."""
    rng = random.Random(seed)
    box = {"x1": 10.0, "y1": 10.0, "x2": 50.0, "y2": 80.0}
    for n in range(predictions // PER_ITEM):
        cars = [
            {"id": f"c{n}-{k}", "label": "car", "score": round(rng.uniform(0.5, 1), 3), "bbox": box}
            for k in range(PER_ITEM)
        ]
        others = [
            {"id": f"p{n}", "label": "pedestrian", "score": 0.9, "bbox": box},
            {"id": f"l{n}", "label": "car", "score": 0.2, "bbox": box},
            {"id": f"a{n}", "label": "car", "score": 0.9, "bbox": box, "status": "accepted"},
        ]
        for p in (*cars, *others):
            p.update(training_set="bench", model="bench")
        yield prepare_item(
            {
                "item_id": f"b{n:07d}",
                "image_predictions": [
                    {"id": f"w{n}", "label": "weather_clear", "score": 0.7, "training_set": "bench"}
                ],
                "object_predictions": [*cars, *others],
            }
        )


def bulk_figures(es: Elasticsearch, url: str, predictions: int) -> None:
    with fresh_index(es, "bench-bulk") as index:
        started = time.perf_counter()
        batch: list[dict[str, Any]] = []
        for item in bulk_items(predictions):
            batch += [{"index": {"_index": index, "_id": item["item_id"]}}, item]
            if len(batch) >= 2000:
                es.bulk(operations=batch)
                batch = []
        if batch:
            es.bulk(operations=batch)
        es.indices.refresh(index=index)
        print(f"loaded {predictions // PER_ITEM} items in {time.perf_counter() - started:.1f}s")
        parsed = parse_query(BULK_QUERY, 4096)

        async def run() -> None:
            async with AsyncElasticsearch(
                url, request_timeout=120, serializers=serializers()
            ) as aes:
                started = time.perf_counter()
                dry = await bulk_review.preview(aes, index, parsed.query, parsed.hits_query)
                dry_s = time.perf_counter() - started
                assert dry.total == predictions, (dry.total, predictions)
                result = await bulk_review.apply(
                    aes,
                    index,
                    parsed.query,
                    parsed.hits_query,
                    action=ReviewAction.ACCEPT,
                    who="bench",
                    api_key="bench",
                    run_id="bench",
                )
                assert result.predictions == predictions, result
                again = await bulk_review.preview(aes, index, parsed.query, parsed.hits_query)
                assert again.total == 0
                print(f"review by query `{BULK_QUERY}`:")
                print(
                    f"  dry run: {dry.total} pending predictions on {dry.items} items, {dry_s:.2f}s"
                )
                print(
                    f"  accept: {result.predictions} predictions on {result.items} items in "
                    f"{result.seconds:.1f}s = {result.predictions / result.seconds:,.0f} "
                    f"predictions/s ({result.items / result.seconds:,.0f} items/s, "
                    f"{result.sweeps} sweeps, {result.conflicts} conflicts)"
                )

        asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--browser", action="store_true", help="time the grid in Chromium")
    parser.add_argument("--rounds", type=int, default=6, help="browser rounds (first is cold)")
    parser.add_argument("--thumbnails", type=int, default=0, help="images for thumbnail speed")
    parser.add_argument("--size", default="1280x720", help="thumbnail source size, WxH")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--bulk", type=int, default=0, help="matched predictions to review")
    args = parser.parse_args()
    settings = StoreSettings()
    url = ",".join(node_urls(settings))
    es = connect(url, settings=settings, request_timeout=120)
    if args.browser:
        browser_figures(es, url, args.rounds)
    if args.thumbnails:
        width, height = (int(v) for v in args.size.split("x"))
        thumbnail_figures(es, url, args.thumbnails, (width, height), args.concurrency)
    if args.bulk:
        bulk_figures(es, url, args.bulk)


if __name__ == "__main__":
    main()
