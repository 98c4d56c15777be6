"""The one door every Elasticsearch call of the API goes through: its client
(:func:`make_client`) and the client's transport.

It times each call into ``autotag_es_request_duration_seconds`` and sends the id of the request
being served (:mod:`api.request_id`) as ``X-Opaque-Id``, which Elasticsearch writes into its
slow logs and task list, so a slow query points back to the HTTP request that ran it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from elastic_transport import AsyncTransport, HttpHeaders, TransportApiResponse
from elastic_transport.client_utils import DEFAULT, DefaultType
from elasticsearch import AsyncElasticsearch
from prometheus_client import Histogram

from api import request_id
from api.settings import Settings
from store.connection import node_urls, serializers

OPAQUE_ID = "x-opaque-id"


def operation_of(target: str) -> str:
    """The API a request target calls, with bounded cardinality: its first ``_`` segment
    (``/idx/_search?...`` -> ``_search``, ``/idx/_doc/7`` -> ``_doc``), else ``index``.

    Index names cannot start with ``_``, so ids and names never become a label.
    """
    path = target.split("?", 1)[0]
    for segment in path.split("/"):
        if segment.startswith("_"):
            return segment
    return "index"


def instrumented_transport(latency: Histogram) -> type[AsyncTransport]:
    """A transport class for ``AsyncElasticsearch(transport_class=...)`` that reports into
    ``latency`` (labels ``method``, ``operation``, ``status``)."""

    class InstrumentedTransport(AsyncTransport):
        # As AsyncTransport's own: the sync base declares the method sync.
        async def perform_request(  # type: ignore[override]
            self,
            method: str,
            target: str,
            *,
            headers: Mapping[str, Any] | DefaultType = DEFAULT,
            **options: Any,
        ) -> TransportApiResponse:
            rid = request_id.current.get()
            if rid is not None:
                # A copy: the client may pass its own default headers object.
                sent = HttpHeaders(headers if headers is not DEFAULT else None)
                if OPAQUE_ID not in sent:
                    sent[OPAQUE_ID] = rid
                headers = sent
            status = "error"
            start = time.perf_counter()
            try:
                response = await super().perform_request(method, target, headers=headers, **options)
                status = str(response.meta.status)
                return response
            finally:
                latency.labels(method, operation_of(target), status).observe(
                    time.perf_counter() - start
                )

    return InstrumentedTransport


def make_client(settings: Settings, latency: Histogram | None = None) -> AsyncElasticsearch:
    """An async client configured from the settings; secrets go to the client, nowhere else.

    With ``latency``, every call is timed into it and carries the request id
    (:mod:`api.es_transport`).
    """
    transport = AsyncTransport if latency is None else instrumented_transport(latency)
    return AsyncElasticsearch(
        node_urls(settings),
        request_timeout=settings.es_request_timeout,
        connections_per_node=settings.es_max_connections,
        # orjson for every JSON mimetype, the compatibility-mode ones (what ES 9 answers) too.
        serializers=serializers(),
        transport_class=transport,
        **settings.client_options(),
    )
