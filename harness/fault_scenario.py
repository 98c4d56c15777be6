"""The three-node fault scenario: load, search and review while one node is killed with SIGKILL.

One run:

1. starts a 3-node loopback cluster with the product's starter (``LocalCluster``), creates the
   items index (3 shards, 1 replica) with ``ensure_index`` and writes a small *seed* set of
   items (``dataset = faults_seed``) whose answers to a fixed query set are computed with the
   reference evaluator;
2. serves the real API (``cli.serve.serve`` in a subprocess, configured with every node URL);
3. runs, all at once: a writer thread bulk-loading generated items through ``PredictionWriter``,
   search threads on ``/v1/search`` and ``/v1/count`` (seed queries must give exactly the
   expected ids; every hit of an open query must satisfy ``evaluate``), review threads
   accepting pending seed predictions through ``/v1/items/.../accept``, and a monitor polling
   cluster health;
4. ``kill -9``s the elected master, keeps going, restarts it and waits for green;
5. checks that every acknowledged write is stored with its content and that every
   acknowledged review is there.

``bench/faults.py`` prints the report; ``test_three_node_faults.py`` asserts on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any, cast

import httpx
from elasticsearch import Elasticsearch

from indexer.prediction_generator import generate, generate_item
from search import evaluate, parse, translate
from store.admin import ensure_index
from store.connection import connect
from store.provision import LocalCluster
from store.provision.cluster import port_is_free
from store.writer import ItemPredictions, PredictionWriter

REPO = Path(__file__).resolve().parents[2]
SEED_DATASET = "faults_seed"
REVIEW_KEY = "faults-reviewer-key"
TRAINING_SET = "model_v1"
SEED = 11

# Seed queries: the seed set never changes during the run except for accepted (pending ->
# accepted) predictions, which no query below can see, so their answers are fixed.
SEED_QUERIES: tuple[str, ...] = (
    f"dataset = {SEED_DATASET} AND image_prefix:weather_fog",
    f"dataset = {SEED_DATASET} AND object_prefix:car AND score >= 0.8",
    f"dataset = {SEED_DATASET} AND (object_prefix:animal OR image_prefix:tunnel)",
    f"dataset = {SEED_DATASET} AND object_prefix:pedestrian AND training_set = model_v2"
    " AND score < 0.5",
    f"dataset = {SEED_DATASET} AND NOT object_prefix:car",
    f"dataset = {SEED_DATASET} AND image_prefix:weather AND NOT score = negative",
)
# Open queries run over the whole, growing index: every hit must satisfy the query.
OPEN_QUERIES: tuple[str, ...] = (
    "object_prefix:car AND score >= 0.8",
    "image_prefix:weather_clear AND NOT object_prefix:pedestrian",
    "score = negative AND object_prefix:traffic_sign",
    "(image_prefix:scene_urban OR image_prefix:scene_highway) AND training_set = model_v2",
)
PAGE = 200


def _log_default(message: str) -> None:
    print(message, flush=True)


@dataclass(frozen=True)
class FaultConfig:
    """Knobs of one run; the defaults keep a run under about three minutes on 2 cores."""

    heap: str = "448m"
    seed_items: int = 1000
    batch_size: int = 200
    max_items: int = 200_000
    search_threads: int = 2
    review_threads: int = 2
    before_kill_s: float = 10.0
    down_s: float = 10.0
    after_green_s: float = 3.0
    green_timeout_s: float = 120.0
    request_attempts: int = 8


@dataclass
class Tally:
    """Thread-safe counters and a bounded list of notable failures."""

    counts: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str, n: int = 1, sample: str | None = None) -> None:
        with self.lock:
            self.counts[key] += n
            if sample is not None and len(self.samples) < 20:
                self.samples.append(sample)


@dataclass
class FaultReport:
    """What happened: request outcomes, verification results and the recovery timeline."""

    nodes: int = 3
    victim: str = ""
    victim_primaries: int = 0
    tally: Tally = field(default_factory=Tally)
    timeline: list[tuple[float, str]] = field(default_factory=list)
    items_attempted: int = 0
    items_acknowledged: int = 0
    items_in_index: int = 0
    items_missing: int = 0
    content_mismatches: int = 0
    reviews_acknowledged: int = 0
    reviews_lost: int = 0
    replica_mismatches: int = 0
    failover_s: float | None = None
    longest_write_gap_s: float = 0.0
    longest_search_gap_s: float = 0.0
    restart_s: float = 0.0
    cluster_start_s: float = 0.0
    recovery_s: float | None = None
    kill_to_green_s: float | None = None
    total_s: float = 0.0
    mismatch_samples: list[str] = field(default_factory=list)

    @property
    def counts(self) -> Counter[str]:
        return self.tally.counts

    def problems(self) -> list[str]:
        """Every broken guarantee, in words; empty when the run held."""
        c = self.counts
        found = []
        if self.items_missing:
            found.append(f"{self.items_missing} acknowledged items missing")
        if self.content_mismatches:
            found.append(f"{self.content_mismatches} items differ from what was acknowledged")
        if self.reviews_lost:
            found.append(f"{self.reviews_lost} acknowledged reviews lost")
        if c["search_wrong"]:
            found.append(f"{c['search_wrong']} searches returned wrong results")
        if c["search_unanswered"]:
            found.append(f"{c['search_unanswered']} searches failed after all retries")
        if c["search_ok"] == 0 or c["search_ok_while_down"] == 0:
            found.append("searches did not keep answering while the node was down")
        if c["review_unanswered"]:
            found.append(f"{c['review_unanswered']} reviews failed after all retries")
        if self.recovery_s is None:
            found.append("the cluster did not return to green")
        if self.replica_mismatches:
            found.append(f"{self.replica_mismatches} shards whose copies disagree")
        return found

    def render(self) -> str:
        c = self.counts
        t = self.timeline

        def fmt(x: float | None) -> str:
            return "-" if x is None else f"{x:.1f} s"

        lines = [
            f"three-node fault run: killed {self.victim} (the elected master, holding"
            f" {self.victim_primaries} of the index's 3 primaries) with SIGKILL",
            "",
            "writes (PredictionWriter, batches of items):",
            f"  batches acknowledged {c['write_batches_ok']}, failed {c['write_batches_failed']}"
            f", items acknowledged {self.items_acknowledged} of {self.items_attempted} sent",
            f"  item retries inside the writer {c['writer_item_retries']}, client-level request"
            f" retries {c['client_retries']}, items given up {c['writer_items_failed']}",
            f"  longest gap between acknowledged batches {self.longest_write_gap_s:.1f} s",
            "searches (/v1/search and /v1/count through the API):",
            f"  answered {c['search_ok']} ({c['search_ok_while_down']} while the node was down),"
            f" failed requests {c['search_failed']}, retries {c['search_retries']},"
            f" gave up {c['search_unanswered']}, wrong results {c['search_wrong']}",
            f"  failed by cause: {self._causes('search_failed:')}",
            f"  longest gap between answered searches {self.longest_search_gap_s:.1f} s",
            "reviews (accept through the API):",
            f"  acknowledged {self.reviews_acknowledged}, failed requests {c['review_failed']},"
            f" retries {c['review_retries']}, conflicts {c['review_conflicts']},"
            f" gave up {c['review_unanswered']}",
            f"  failed by cause: {self._causes('review_failed:')}",
            "verification after recovery:",
            f"  items in index {self.items_in_index}; acknowledged items missing"
            f" {self.items_missing}; content mismatches {self.content_mismatches}",
            f"  acknowledged reviews lost {self.reviews_lost}; shards whose copies disagree"
            f" {self.replica_mismatches}",
            "timing:",
            f"  failover (kill -> 2-node cluster answering health) {fmt(self.failover_s)}",
            f"  restart (start_node: JVM up, node joined) {fmt(self.restart_s)}",
            f"  recovery (node back -> green) {fmt(self.recovery_s)};"
            f" kill -> green {fmt(self.kill_to_green_s)}",
            f"  total run {self.total_s:.0f} s (starting the 3 nodes {self.cluster_start_s:.0f} s)",
            "cluster health timeline (seconds from kill):",
            *(f"  {at:+7.1f}  {what}" for at, what in t),
        ]
        if self.tally.samples or self.mismatch_samples:
            samples = [*self.tally.samples, *self.mismatch_samples]
            lines += ["samples:", *(f"  {s}" for s in samples)]
        problems = self.problems()
        lines.append("RESULT: " + ("ok" if not problems else "; ".join(problems)))
        return "\n".join(lines)

    def _causes(self, prefix: str) -> str:
        causes = {k[len(prefix) :]: v for k, v in self.counts.items() if k.startswith(prefix)}
        return ", ".join(f"{k} {v}" for k, v in sorted(causes.items())) or "none"


class _RetryCounter(logging.Handler):
    """Counts the Elasticsearch client's own retries (it logs one warning per retry)."""

    def __init__(self, tally: Tally) -> None:
        super().__init__(logging.WARNING)
        self.tally = tally

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Retrying request"):
            self.tally.add("client_retries")


def _port_block(count: int) -> int:
    """A base port with ``count`` free consecutive ports for HTTP and the same +1000."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20000, 50000)
        ports = [base + i for i in range(count)] + [base + 1000 + i for i in range(count)]
        if all(port_is_free(p) for p in ports):
            return base
    raise RuntimeError("no block of free ports found on 127.0.0.1")


def seed_item(n: int) -> ItemPredictions:
    generated = generate_item(n, SEED)
    return ItemPredictions(
        item={**generated.item, "dataset": SEED_DATASET},
        image_predictions=generated.image_predictions,
        object_predictions=generated.object_predictions,
    )


def _item_number(item_id: str) -> int:
    return int(item_id.removeprefix("item-"))


def content_differences(
    stored: Mapping[str, Any], expected: ItemPredictions, accepted: set[str]
) -> list[str]:
    """How ``stored`` differs from what the writer acknowledged (and reviews since)."""
    diffs = [
        f"{key}: {stored.get(key)!r} != {value!r}"
        for key, value in expected.item.items()
        if stored.get(key) != value
    ]
    for path, predictions in (
        ("image_predictions", expected.image_predictions),
        ("object_predictions", expected.object_predictions),
    ):
        by_id = {str(p.get("id")): p for p in stored.get(path) or ()}
        if len(by_id) != len(predictions):
            diffs.append(f"{path}: {len(by_id)} stored, {len(predictions)} written")
        for prediction in predictions:
            pid = str(prediction["id"])
            got = by_id.get(pid)
            if got is None:
                diffs.append(f"{path}[{pid}] missing")
                continue
            for key in ("label", "score", "training_set", "model", "bbox"):
                if got.get(key) != prediction.get(key):
                    diffs.append(f"{path}[{pid}].{key}: {got.get(key)!r}")
            want = str(prediction.get("status", "pending"))
            if pid in accepted:
                want = "modified" if want == "modified" else "accepted"
            if got.get("status") != want:
                diffs.append(f"{path}[{pid}].status: {got.get('status')!r} != {want!r}")
    return diffs


def _mget(client: Elasticsearch, index: str, ids: Sequence[str]) -> Iterator[dict[str, Any]]:
    for start in range(0, len(ids), 500):
        chunk = list(ids[start : start + 500])
        yield from client.mget(index=index, ids=chunk, realtime=True)["docs"]


@contextlib.contextmanager
def api_server(urls: Sequence[str], index: str) -> Iterator[str]:
    """The real API under uvicorn in a subprocess, pointed at every node; yields its URL."""
    port = 0
    for _ in range(50):
        port = random.randrange(40000, 60000)
        if port_is_free(port):
            break
    env = {
        **os.environ,
        "AUTOTAG_ES_URL": ",".join(urls),
        "AUTOTAG_INDEX": index,
        "AUTOTAG_REVIEW_API_KEYS": f"faults:{REVIEW_KEY}",
    }
    code = f"from cli.serve import serve; serve(host='127.0.0.1', port={port}, log_level='warning')"
    process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/v1/health/live", timeout=2).status_code == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class _Run:
    """State shared by the worker threads of one run."""

    cfg: FaultConfig
    client: Elasticsearch
    index: str
    api: str
    report: FaultReport
    stop: threading.Event = field(default_factory=threading.Event)
    node_down: threading.Event = field(default_factory=threading.Event)
    acked: dict[str, ItemPredictions] = field(default_factory=dict)
    accepted: dict[str, set[str]] = field(default_factory=dict)
    write_times: list[float] = field(default_factory=list)
    search_times: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tally(self) -> Tally:
        return self.report.tally

    def request(
        self, kind: str, send: Callable[[], httpx.Response], accept: Callable[[int], bool]
    ) -> httpx.Response | None:
        """Send until ``accept(status)``; counts failures and retries; ``None`` if it gave up."""
        for attempt in range(self.cfg.request_attempts):
            if attempt:
                self.tally.add(f"{kind}_retries")
                time.sleep(min(2.0, 0.1 * 2**attempt))
            try:
                response = send()
            except httpx.HTTPError as error:
                self.tally.add(f"{kind}_failed")
                self.tally.add(f"{kind}_failed:{type(error).__name__}")
                continue
            if accept(response.status_code):
                return response
            self.tally.add(f"{kind}_failed")
            code = ""
            with contextlib.suppress(ValueError, KeyError, TypeError):
                code = " " + str(response.json()["error"]["code"])
            self.tally.add(f"{kind}_failed:{response.status_code}{code}")
        self.tally.add(f"{kind}_unanswered")
        return None


def _writer(run: _Run) -> None:
    cfg = run.cfg
    writer = PredictionWriter(
        run.client, run.index, training_set=TRAINING_SET, batch_size=cfg.batch_size
    )
    start = cfg.seed_items
    while not run.stop.is_set() and start < cfg.seed_items + cfg.max_items:
        batch = list(generate(cfg.batch_size, SEED, start=start))
        start += cfg.batch_size
        run.report.items_attempted += len(batch)
        try:
            result = writer.write(batch)
        except Exception as error:  # the writer gave up on the whole batch: unacknowledged
            run.tally.add("write_batches_failed", sample=f"write batch: {error!r}"[:300])
            continue
        failed = {item_id for item_id, _ in result.failed}
        run.tally.add("write_batches_ok")
        run.tally.add("writer_item_retries", result.retries)
        run.tally.add("writer_items_failed", len(failed))
        with run.lock:
            for entry in batch:
                if entry.item_id not in failed:
                    run.acked[entry.item_id] = entry
            run.write_times.append(time.monotonic())


@dataclass(frozen=True)
class _Case:
    query: str
    endpoint: str  # "search" or "count"
    expected: frozenset[str] | None  # exact ids (seed queries), or None: check hits only


def _check(case: _Case, body: dict[str, Any]) -> str | None:
    """Why the answer is wrong, or ``None``."""
    if case.endpoint == "count":
        assert case.expected is not None
        if body["count"] != len(case.expected):
            return f"count {body['count']} != {len(case.expected)}"
        return None
    ids = [hit["item"]["item_id"] for hit in body["hits"]]
    tree = parse(case.query)
    for hit in body["hits"]:
        if not evaluate(tree, hit["item"]):
            return f"hit {hit['item']['item_id']} does not match"
    if case.expected is not None:
        if body["total"] != len(case.expected):
            return f"total {body['total']} != {len(case.expected)}"
        if len(case.expected) <= PAGE and set(ids) != case.expected:
            return f"ids differ: {sorted(set(ids) ^ case.expected)[:5]}"
        if not set(ids) <= case.expected:
            return "ids outside the expected set"
    return None


def _searcher(run: _Run, cases: Sequence[_Case], offset: int) -> None:
    with httpx.Client(base_url=run.api, timeout=30) as http:
        i = offset
        while not run.stop.is_set():
            case = cases[i % len(cases)]
            i += 1
            body = {"query": case.query} | ({"size": PAGE} if case.endpoint == "search" else {})
            was_down = run.node_down.is_set()
            response = run.request(
                "search",
                partial(http.post, f"/v1/{case.endpoint}", json=body),
                _is_ok,
            )
            if response is None:
                continue
            run.tally.add("search_ok")
            if was_down and run.node_down.is_set():
                run.tally.add("search_ok_while_down")
            with run.lock:
                run.search_times.append(time.monotonic())
            if (why := _check(case, response.json())) is not None:
                run.tally.add("search_wrong", sample=f"{case.endpoint} {case.query!r}: {why}")


def _is_ok(status: int) -> bool:
    return status == 200


def _reviewer(run: _Run, targets: Sequence[tuple[str, str]]) -> None:
    headers = {"X-API-Key": REVIEW_KEY}
    with httpx.Client(base_url=run.api, timeout=30, headers=headers) as http:
        for item_id, pid in targets:
            if run.stop.is_set():
                return
            path = f"/v1/items/{item_id}/predictions/{pid}/accept"
            response = run.request("review", partial(http.post, path), _is_ok)
            if response is None:
                continue
            if response.json()["event"]["prediction_id"] != pid:
                run.tally.add("review_wrong", sample=f"review {item_id}/{pid}: wrong event")
            with run.lock:
                run.accepted.setdefault(item_id, set()).add(pid)


def _monitor(run: _Run, cluster: LocalCluster) -> None:
    """Health transitions through a client of its own (no retries, short timeouts)."""
    client = connect(cluster.urls, max_retries=2, request_timeout=3)
    last = ""
    try:
        while not run.stop.is_set():
            try:
                health = client.cluster.health(timeout="1s")
                state = (
                    f"{health['status']}, {health['number_of_nodes']} nodes, "
                    f"{health['unassigned_shards']} unassigned, "
                    f"{health['initializing_shards']} initializing"
                )
            except Exception as error:
                state = f"no answer ({type(error).__name__})"
            if state != last:
                run.report.timeline.append((time.monotonic(), state))
                last = state
            time.sleep(0.25)
    finally:
        client.close()


def _wait_health(
    client: Elasticsearch, *, status: str, nodes: int, timeout_s: float
) -> float | None:
    """Seconds until the cluster reports ``status`` (or better) with ``nodes`` nodes."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        with contextlib.suppress(Exception):
            health = client.options(request_timeout=5).cluster.health(
                wait_for_status=status, wait_for_nodes=str(nodes), timeout="2s"
            )
            if not health["timed_out"]:
                return time.monotonic() - started
        time.sleep(0.25)
    return None


def _gap(times: list[float], start: float, end: float) -> float:
    points = sorted([start, *(t for t in times if start <= t <= end), end])
    return max(b - a for a, b in pairwise(points))


def _expected_answers(client: Elasticsearch, index: str, seeds: Sequence[str]) -> list[_Case]:
    """The fixed answers of the seed queries (the evaluator's, checked against ES once)."""
    sources = [doc["_source"] for doc in _mget(client, index, seeds)]
    cases: list[_Case] = []
    for query in SEED_QUERIES:
        tree = parse(query)
        expected = frozenset(s["item_id"] for s in sources if evaluate(tree, s))
        counted = client.count(index=index, query=translate(tree))["count"]
        if counted != len(expected):
            raise AssertionError(f"{query!r}: ES counts {counted}, evaluate {len(expected)}")
        cases += [_Case(query, "search", expected), _Case(query, "count", expected)]
    cases += [_Case(query, "search", None) for query in OPEN_QUERIES]
    return cases


def _review_targets(seeds: Sequence[ItemPredictions]) -> list[tuple[str, str]]:
    targets = [
        (entry.item_id, str(p["id"]))
        for entry in seeds
        for p in (*entry.image_predictions, *entry.object_predictions)
        if p.get("status", "pending") == "pending"
    ]
    random.Random(SEED).shuffle(targets)
    return targets


def _verify(run: _Run, seeds: Sequence[ItemPredictions]) -> None:
    report, client = run.report, run.client
    client.indices.refresh(index=run.index)
    report.items_in_index = int(client.count(index=run.index)["count"])
    expected = {entry.item_id: entry for entry in seeds} | run.acked
    report.items_acknowledged = len(run.acked)
    report.reviews_acknowledged = sum(len(p) for p in run.accepted.values())
    for doc in _mget(client, run.index, sorted(expected)):
        item_id = doc["_id"]
        accepted = run.accepted.get(item_id, set())
        if not doc.get("found"):
            report.items_missing += 1
            report.reviews_lost += len(accepted)
            report.mismatch_samples.append(f"{item_id}: missing ({doc.get('error')})")
            continue
        source = doc["_source"]
        if diffs := content_differences(source, expected[item_id], accepted):
            report.content_mismatches += 1
            report.mismatch_samples.append(f"{item_id}: {'; '.join(diffs[:3])}")
        events = {
            e.get("prediction_id")
            for e in source.get("review_history") or ()
            if e.get("action") == "accept"
        }
        report.reviews_lost += len(accepted - events)
    del report.mismatch_samples[20:]
    # Primary and replica of each shard hold the same documents once recovery is done.
    rows: list[dict[str, Any]] = cast(
        list[dict[str, Any]],
        client.cat.shards(index=run.index, format="json", h="shard,prirep,state,docs").body,
    )
    by_shard: dict[str, set[str]] = {}
    for row in rows:
        by_shard.setdefault(str(row["shard"]), set()).add(f"{row['state']}:{row['docs']}")
    report.replica_mismatches = sum(1 for copies in by_shard.values() if len(copies) != 1)


def run_scenario(
    cfg: FaultConfig | None = None, log: Callable[[str], None] = _log_default
) -> FaultReport:
    """Run the whole scenario (see the module docstring) and return what happened."""
    cfg = cfg or FaultConfig()
    report = FaultReport()
    began = time.monotonic()
    base = _port_block(3)
    cluster = LocalCluster(
        name=f"autotag-faults-{uuid.uuid4().hex[:8]}",
        nodes=3,
        http_port=base,
        transport_port=base + 1000,
        heap=cfg.heap,
    )
    retry_counter = _RetryCounter(report.tally)
    transport_log = logging.getLogger("elastic_transport.transport")
    transport_log.addHandler(retry_counter)
    try:
        log(f"starting 3 nodes ({cfg.heap} heap each) at {', '.join(cluster.urls)}")
        cluster.start()
        report.cluster_start_s = time.monotonic() - began
        client = connect(cluster.urls, max_retries=5, request_timeout=30)
        alias = "faults-items"
        index = ensure_index(client, alias, shards=3, replicas=1)
        client.cluster.health(index=index, wait_for_status="green", timeout="60s")
        seeds = [seed_item(n) for n in range(cfg.seed_items)]
        seeded = PredictionWriter(client, alias, training_set=TRAINING_SET).write(seeds)
        assert not seeded.failed, seeded.failed[:3]
        client.indices.refresh(index=alias)
        cases = _expected_answers(client, alias, [entry.item_id for entry in seeds])
        log(
            f"seeded {seeded.written} items; expected answers: "
            + ", ".join(str(len(c.expected or ())) for c in cases if c.endpoint == "count")
        )
        targets = _review_targets(seeds)
        with api_server(cluster.urls, alias) as api:
            run = _Run(cfg=cfg, client=client, index=alias, api=api, report=report)
            threads = [threading.Thread(target=_writer, args=(run,), name="writer")]
            threads += [
                threading.Thread(target=_searcher, args=(run, cases, i), name=f"search-{i}")
                for i in range(cfg.search_threads)
            ]
            threads += [
                threading.Thread(
                    target=_reviewer, args=(run, targets[i :: cfg.review_threads]), name=f"rev-{i}"
                )
                for i in range(cfg.review_threads)
            ]
            for thread in threads:
                thread.start()
            time.sleep(cfg.before_kill_s)

            masters = cast(list[dict[str, Any]], client.cat.master(format="json").body)
            master = str(masters[0]["node"])
            victim = int(master.rsplit("-", 1)[1])
            report.victim = master
            shards = cast(
                list[dict[str, Any]],
                client.cat.shards(index=index, format="json", h="prirep,node").body,
            )
            report.victim_primaries = sum(
                1 for row in shards if row["prirep"] == "p" and row["node"] == master
            )
            monitor = threading.Thread(target=_monitor, args=(run, cluster), name="monitor")
            monitor.start()
            time.sleep(0.5)
            killed = time.monotonic()
            cluster.kill_node(victim)
            run.node_down.set()
            log(f"kill -9 {master} (elected master) after {killed - began:.0f} s")
            survivors = connect(
                [u for i, u in enumerate(cluster.urls) if i != victim], max_retries=0
            )
            report.failover_s = _wait_health(
                survivors, status="yellow", nodes=2, timeout_s=cfg.down_s + 30
            )
            survivors.close()
            time.sleep(max(0.0, cfg.down_s - (time.monotonic() - killed)))

            restarting = time.monotonic()
            log(f"restarting {master} after {restarting - killed:.0f} s down")
            cluster.start_node(victim)
            report.restart_s = time.monotonic() - restarting
            run.node_down.clear()
            back = time.monotonic()
            report.recovery_s = _wait_health(
                client, status="green", nodes=3, timeout_s=cfg.green_timeout_s
            )
            if report.recovery_s is not None:
                report.kill_to_green_s = time.monotonic() - killed
            log(f"green again {fmt_s(report.kill_to_green_s)} after the kill")
            time.sleep(cfg.after_green_s)
            run.stop.set()
            for thread in [*threads, monitor]:
                thread.join(timeout=120)
            ended = time.monotonic()
            report.timeline = [(at - killed, what) for at, what in report.timeline]
            report.longest_write_gap_s = _gap(run.write_times, killed, back)
            report.longest_search_gap_s = _gap(run.search_times, killed, ended)
            _verify(run, seeds)
    finally:
        transport_log.removeHandler(retry_counter)
        cluster.destroy()
    report.total_s = time.monotonic() - began
    return report


def fmt_s(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f} s"
