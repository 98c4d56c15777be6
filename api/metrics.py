"""Prometheus metrics of one API process, served at ``/metrics`` (the official client).

Each app has its own registry (two apps in one process, as in the tests, never mix counts).
What is measured, and where:

- requests and their latency, per route template and status: :mod:`api.middleware`;
- Elasticsearch calls and their latency: :mod:`api.es_transport`, the client's transport;
- review decisions, per action and way of reviewing: the review routes, through
  :func:`count_reviews`;
- runs in flight: runs are executed by workers (other processes), so at each scrape the gauge is
  set to the runs the runs index holds as ``running`` (:func:`runs_in_flight`).

The names and labels are listed in docs/operations.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final

import elastic_transport
import elasticsearch
from elasticsearch import AsyncElasticsearch
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from store import runs

PATH: Final = "/metrics"
# Seconds; ES calls are often a millisecond or two, so the buckets start below the default's.
LATENCY_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


@dataclass(frozen=True, slots=True)
class Metrics:
    """Every metric of one app, in its own registry."""

    registry: CollectorRegistry
    requests: Counter
    request_seconds: Histogram
    es_seconds: Histogram
    runs_in_flight: Gauge
    review_actions: Counter

    @classmethod
    def create(cls) -> Metrics:
        registry = CollectorRegistry(auto_describe=True)
        http = ("method", "route", "status")
        return cls(
            registry=registry,
            requests=Counter(
                "autotag_http_requests",
                "HTTP requests answered, by method, route template and status.",
                http,
                registry=registry,
            ),
            request_seconds=Histogram(
                "autotag_http_request_duration_seconds",
                "Time to answer an HTTP request, by method, route template and status.",
                http,
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            es_seconds=Histogram(
                "autotag_es_request_duration_seconds",
                "Time of one Elasticsearch call (retries included), by method, API "
                "(`_search`, `_doc`, ...; `index` for index-level calls) and status "
                "(`error` when no answer came).",
                ("method", "operation", "status"),
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            runs_in_flight=Gauge(
                "autotag_runs_in_flight",
                "Runs started and not yet finished, read from the runs index at each scrape.",
                registry=registry,
            ),
            review_actions=Counter(
                "autotag_review_actions",
                "Review decisions applied, one per prediction, by action and by how they "
                "were made (`prediction`: one prediction's endpoint; `item`: a saved review "
                "of one item; `query`: review by query).",
                ("action", "via"),
                registry=registry,
            ),
        )

    def exposition(self) -> bytes:
        """The registry in Prometheus's text format."""
        return generate_latest(self.registry)


def metrics_of(app: FastAPI) -> Metrics:
    metrics: Metrics = app.state.metrics
    return metrics


async def _request_metrics(request: Request) -> Metrics:
    return metrics_of(request.app)


MetricsDep = Annotated[Metrics, Depends(_request_metrics)]


def count_reviews(metrics: Metrics, via: str, action: str, decisions: int = 1) -> None:
    """``decisions`` review decisions of ``action`` (``accept``, ``reject``, ``modify``)."""
    if decisions:
        metrics.review_actions.labels(action=action, via=via).inc(decisions)


async def runs_in_flight(es: AsyncElasticsearch | None, runs_index: str) -> int | None:
    """Runs the runs index holds as running (any worker's); 0 before the first run, ``None``
    when Elasticsearch does not answer (the gauge keeps its last value: a scrape never fails)."""
    if es is None:
        return None
    try:
        answer = await es.count(
            index=runs_index,
            query={
                "bool": {
                    "filter": [
                        {"term": {runs.KIND: runs.KIND_RUN}},
                        {"term": {runs.STATE: runs.RunState.RUNNING.value}},
                    ]
                }
            },
            ignore_unavailable=True,
        )
    except (elasticsearch.ApiError, elastic_transport.TransportError):
        return None
    return int(answer["count"])


def router() -> APIRouter:
    """``GET /metrics``: not part of the API's schema (it is the operators')."""
    routes = APIRouter(include_in_schema=False)

    @routes.get(PATH)
    async def metrics(m: MetricsDep, request: Request) -> Response:
        running = await runs_in_flight(request.app.state.es, request.app.state.settings.runs_index)
        if running is not None:
            m.runs_in_flight.set(running)
        return Response(m.exposition(), media_type=CONTENT_TYPE_LATEST)

    return routes
