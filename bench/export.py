"""Export benchmark: items/s and peak memory (RSS) of exports over a generated index.

    .venv/bin/python -m bench.export --items 100000
    .venv/bin/python -m bench.export --items 1000000 --keep
    .venv/bin/python -m bench.export --items 1000000 --skip-load      # export only, again

Loads ``--items`` generated items (``indexer.prediction_generator``: 3-30 predictions each,
three training sets, a share of them reviewed) with raw ``_bulk`` into a fresh index, then runs
each export in a child process of its own, so that its peak RSS (``VmHWM``) is the
export's and nothing else's. Every export writes to a sink that only counts bytes: what is
measured is reading from Elasticsearch plus writing the format, not the disk. The ``read``
row is the floor: the same point-in-time pages read and decoded, nothing written. Uses
``ES_URL`` (or ``AUTOTAG_ES_URL``) or starts a local node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from elasticsearch import AsyncElasticsearch

from export.run import Export, selection_for
from export.select import select
from export.spec import Content, ExportFormat, ExportSpec, Sampling, Strategy
from search import parse, render
from store.connection import connect, ensure_elasticsearch, serializers
from store.settings import StoreSettings

# (name, format or "read", query, sampling, content)
RUNS: tuple[tuple[str, str, str, str | None, str], ...] = (
    ("read", "read", 'dataset != "none"', None, "predictions"),
    ("jsonl", "jsonl", 'dataset != "none"', None, "predictions"),
    ("coco", "coco", 'dataset != "none"', None, "predictions"),
    ("yolo", "yolo", 'dataset != "none"', None, "predictions"),
    ("jsonl reviewed", "jsonl", 'dataset != "none"', None, "reviewed"),
    ("uncertain 10k cars", "jsonl", "object_prefix:car", "uncertain:10000", "predictions"),
    ("random 10k", "jsonl", 'dataset != "none"', "random:10000", "predictions"),
    ("stratified 500/label", "jsonl", 'dataset != "none"', "stratified:500", "predictions"),
)


def _peak_mib() -> float:
    """This process's peak RSS. ``VmHWM`` belongs to the process's own memory map, unlike
    ``ru_maxrss``, which Linux carries over ``execve`` from the forking parent."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _measure(url: str, index: str, run: str) -> dict[str, Any]:
    name, fmt, query, sample, content = next(r for r in RUNS if r[0] == run)
    ast = parse(query)
    sampling = None
    if sample is not None:
        strategy, n = sample.split(":")
        sampling = Sampling(Strategy(strategy), int(n), seed=1)
    spec = ExportSpec(
        render(ast),
        ExportFormat.JSONL if fmt == "read" else ExportFormat(fmt),
        content=Content(content),
        sampling=sampling,
    )
    es = AsyncElasticsearch(url, serializers=serializers(), request_timeout=120)
    start_mib = _peak_mib()
    written = 0
    items = 0
    try:
        job = Export(es, index, spec, selection_for(ast, spec))
        await job.start()
        started = time.perf_counter()
        if fmt == "read":
            async for _ in select(job.snapshot, job.selection):
                items += 1
            await job.snapshot.close()
        else:
            async for chunk in job.chunks():
                written += len(chunk)
            assert job.manifest is not None
            items = int(job.manifest["items"])
        seconds = time.perf_counter() - started
    finally:
        await es.close()
    return {
        "run": name,
        "items": items,
        "seconds": round(seconds, 2),
        "items_per_s": round(items / seconds, 1) if seconds else None,
        "megabytes": round(written / 1e6, 1),
        "rss_start_mib": round(start_mib, 1),
        "rss_peak_mib": round(_peak_mib(), 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--index", default=None, help="default: bench-export-<items>")
    parser.add_argument("--skip-load", action="store_true", help="use the index as it is")
    parser.add_argument("--keep", action="store_true", help="keep the index afterwards")
    parser.add_argument("--runs", default=",".join(r[0] for r in RUNS))
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # child process: one run
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    index = args.index or f"bench-export-{args.items}"

    if args.measure:
        print(json.dumps(asyncio.run(_measure(args.url, index, args.measure))))
        return 0

    settings = StoreSettings()
    url = ensure_elasticsearch(settings)[0]
    client = connect(url, settings=settings, request_timeout=300)
    if not args.skip_load:
        from bench.scale import fresh_index, load_raw  # the loader's imports stay out of children

        fresh_index(client, index)
        started = time.perf_counter()
        load_raw(client, index, args.items, batch=1000, in_flight=2)
        client.indices.put_settings(index=index, settings={"refresh_interval": "1s"})
        client.indices.refresh(index=index)
        client.options(request_timeout=3600).indices.forcemerge(index=index, max_num_segments=1)
        print(f"loaded {args.items:,} items in {time.perf_counter() - started:.0f} s", flush=True)
    count = client.count(index=index)["count"]
    size = client.indices.stats(index=index, metric=["store"])["_all"]["primaries"]["store"]
    print(f"index {index}: {count:,} items, {size['size_in_bytes'] / 2**30:.2f} GiB", flush=True)
    print(
        f"{'run':24} {'items':>9} {'s':>8} {'items/s':>9} {'MB out':>8} {'RSS start':>10} "
        f"{'RSS peak':>9}"
    )
    results = []
    for run in args.runs.split(","):
        child = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.export",
                "--measure",
                run,
                "--url",
                url,
                "--index",
                index,
            ],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ},
        )
        if child.returncode:
            print(f"{run}: failed\n{child.stderr}", file=sys.stderr)
            return 1
        result = json.loads(child.stdout.strip().splitlines()[-1])
        results.append(result)
        print(
            f"{result['run']:24} {result['items']:>9,} {result['seconds']:>8} "
            f"{result['items_per_s']:>9} {result['megabytes']:>8} "
            f"{result['rss_start_mib']:>9}M {result['rss_peak_mib']:>8}M",
            flush=True,
        )
    print(json.dumps({"items": count, "results": results}))
    if not args.keep and not args.skip_load:
        client.indices.delete(index=index, ignore_unavailable=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
