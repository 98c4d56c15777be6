"""Fuzz the query language and the query endpoints with hostile text.

    .venv/bin/python -m bench.fuzz_queries                      # 100,000 direct + 10,000 HTTP
    ES_URL=http://127.0.0.1:9200 .venv/bin/python -m bench.fuzz_queries --cases 200000

Direct layer: every case goes through ``search.parse`` + ``translate`` and the API's
``parse_query`` (inner hits, sorts); long and deep cases also through ``parse`` with no length
limit, to prove the parser itself copes (no ``RecursionError``). HTTP layer: a sample of the
same generator plus fixed extreme cases (10,000 parentheses, 1 MB, NUL, lone surrogates...)
is posted to the real app (ASGI, lifespan and all) in front of a real node, against a fresh
index holding a few hundred generated items: ``ES_URL`` if set, else a local node started for
the run. Prints counts per category, per outcome and per HTTP status/error code; exits 1 on any
finding (a 5xx, a rejection without a position, a non-``QueryError`` exception, a translation
with a forbidden query type...). The generators and checks live in
``harness/fuzzing.py``, shared with the CI-sized test.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections import Counter

from pydantic import SecretStr

from api.settings import Settings
from harness.elastic_node import provide_node
from harness.fuzzing import (
    SPECIAL_HTTP_CASES,
    Tally,
    cases,
    check_direct,
    run_http,
)
from indexer.prediction_generator import generate
from store.connection import connect
from store.mapping import index_settings, item_mapping
from store.writer import PredictionWriter

UNLIMITED = 10_000_000


def direct_phase(count: int, seed: int, tally: Tally) -> tuple[Counter[str], float]:
    categories: Counter[str] = Counter()
    started = time.perf_counter()
    for category, text in cases(count, seed):
        categories[category] += 1
        check_direct(text, tally)
        if category == "huge":
            check_direct(text, tally, max_length=UNLIMITED)
    return categories, time.perf_counter() - started


def http_phase(count: int, seed: int, items: int, tally: Tally) -> tuple[str, float]:
    texts = [text for _, text in cases(count, seed + 1)] + list(SPECIAL_HTTP_CASES)
    with provide_node() as (url, how):
        es = connect(url)
        index = f"fuzz-items-{uuid.uuid4().hex[:8]}"
        es.indices.create(index=index, mappings=item_mapping(), settings=index_settings())
        try:
            writer = PredictionWriter(es, index, training_set="model_v1", refresh=True)
            writer.write(list(generate(items, seed=seed)))
            settings = Settings(es_url=url, index=index, review_api_keys=SecretStr("fuzz:fuzz-key"))
            started = time.perf_counter()
            asyncio.run(run_http(settings, texts, tally))
            elapsed = time.perf_counter() - started
        finally:
            es.indices.delete(index=index, ignore_unavailable=True)
            es.close()
    return f"{url} ({how})", elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=100_000, help="direct cases")
    parser.add_argument("--http", type=int, default=10_000, help="HTTP cases (0: skip)")
    parser.add_argument("--items", type=int, default=300, help="items behind the HTTP layer")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    direct = Tally()
    categories, direct_s = direct_phase(args.cases, args.seed, direct)
    print(f"direct: {args.cases} cases in {direct_s:.1f} s ({args.cases / direct_s:.0f}/s)")
    print("  by category: " + ", ".join(f"{k} {v}" for k, v in categories.most_common()))
    print("  outcomes (a `huge` case is checked twice: API limit and unlimited):")
    for outcome, n in direct.outcomes.most_common():
        print(f"    {outcome:<36} {n:>8}")
    tallies = [("direct", direct)]

    if args.http:
        http = Tally()
        where, http_s = http_phase(args.http, args.seed, args.items, http)
        total = args.http + len(SPECIAL_HTTP_CASES)
        print(f"http: {total} requests to the ASGI app over {where} in {http_s:.1f} s")
        for outcome, n in http.outcomes.most_common():
            print(f"    {outcome:<36} {n:>8}")
        unplaced = sum(
            n
            for k, n in http.outcomes.items()
            if k.startswith("http 4") and "invalid_query" not in k
        )
        print(
            f"  4xx without a query position: {unplaced} (search_rejected: Elasticsearch refused"
            " the translated query, e.g. text compared with a numeric metadata field)"
        )
        tallies.append(("http", http))

    failed = False
    for name, tally in tallies:
        print(
            f"{name} findings: "
            + (", ".join(f"{k} {v}" for k, v in tally.findings.items()) or "none")
        )
        for kind, examples in tally.examples.items():
            for example in examples:
                print(f"    {kind}: {example}")
        failed |= bool(tally.findings)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
