"""Judging a slice in worker processes (slices of one point in time, accumulators merged)
gives the figures one process gives: every item read once, every detection in its curve."""

from __future__ import annotations

import asyncio
import random
from functools import partial
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from api.es_transport import make_client
from api.settings import Settings
from evaluation.report import EvaluationOptions, EvaluationReport
from evaluation.run import Workers, evaluate
from harness.evaluation_items import item
from tests.api.conftest import seed

pytestmark = pytest.mark.es

ITEMS = 600


def _figures(report: EvaluationReport) -> dict[str, Any]:
    """Everything but the bootstrap's intervals (its item groups follow arrival order)."""
    out: dict[str, Any] = {"items": report.items}
    for ts in report.training_sets:
        out[ts.training_set] = (
            ts.items,
            ts.mean_ap,
            ts.mean_ap_50_95,
            [m.model_dump() for m in ts.labels],
            ts.confusions,
        )
    out["pairs"] = [
        (
            c.training_set_a,
            c.training_set_b,
            c.items,
            [(row.label, [(d.metric, d.a, d.b, d.difference) for d in row.differences])
             for row in c.labels],
        )
        for c in report.comparisons
    ]  # fmt: skip
    return out


def _evaluate(url: str, index: str, truth: str, workers: Workers | None) -> EvaluationReport:
    settings = Settings(es_url=url)
    options = EvaluationOptions(training_sets=["v1", "v2"], truth=truth, bootstrap=50)

    async def run() -> EvaluationReport:
        es = make_client(settings)
        try:
            return await evaluate(es, index, {"match_all": {}}, "all", options, workers=workers)
        finally:
            await es.close()

    return asyncio.run(run())


@pytest.mark.parametrize("truth", ["gt", "reviews"])
def test_workers_give_the_figures_of_one_process(
    es: Elasticsearch, es_url: str, item_index: str, truth: str
) -> None:
    rng = random.Random(11)
    seed(es, item_index, [item(rng, n) for n in range(ITEMS)])
    alone = _evaluate(es_url, item_index, truth, None)
    workers = Workers(3, partial(make_client, Settings(es_url=es_url)), min_items=1)
    split = _evaluate(es_url, item_index, truth, workers)
    assert alone.items == ITEMS
    assert _figures(split) == _figures(alone)
    (pair,) = split.comparisons
    assert pair.items == ITEMS
    if truth == "gt":
        # the world's v2 finds more and jitters less: the merged curves still say so
        v1, v2 = (ts.mean_ap for ts in split.training_sets)
        assert v1 is not None
        assert v2 is not None
        assert v2 > v1


def test_small_slices_stay_in_process(es: Elasticsearch, es_url: str, item_index: str) -> None:
    """Below ``min_items`` no process starts: a connect that cannot work is never called."""
    rng = random.Random(3)
    seed(es, item_index, [item(rng, n) for n in range(20)])

    def unreachable() -> Any:
        raise AssertionError("a worker was started for a small slice")

    report = _evaluate(es_url, item_index, "gt", Workers(2, unreachable, min_items=21))
    assert report.items == 20
