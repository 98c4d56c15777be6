"""Connect to Elasticsearch: ``ES_URL`` when given, else the local cluster autotag runs.

Credentials come from the environment (``ES_API_KEY``, or ``ES_USERNAME``/``ES_PASSWORD``;
``ES_CA_CERTS`` for TLS) and are never printed.
"""

from __future__ import annotations

import os
from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from store.provision import LocalCluster

DEFAULT_CLUSTER = "autotag"


class OrjsonNdjsonSerializer(NdjsonSerializer, OrjsonSerializer):
    """NDJSON (bulk, msearch) bodies encoded with orjson: the client's default is stdlib json,
    which was a fifth of the writer's time."""


def serializers() -> dict[str, Any]:
    """orjson for JSON and NDJSON, under the plain and the compatibility-mode mimetypes."""
    json, ndjson = OrjsonSerializer(), OrjsonNdjsonSerializer()
    return {
        "application/json": json,
        "application/vnd.elasticsearch+json": json,
        "application/x-ndjson": ndjson,
        "application/vnd.elasticsearch+x-ndjson": ndjson,
    }


def configured_url() -> str | None:
    """``ES_URL`` (comma-separated for several nodes), if the user set it."""
    return os.environ.get("ES_URL") or None


def local_cluster(name: str = DEFAULT_CLUSTER) -> LocalCluster:
    """The local cluster ``name``, as last started, or as it would be started now."""
    recorded = LocalCluster.load(name)
    if recorded is not None:
        return recorded
    port = int(os.environ.get("AUTOTAG_ES_PORT", "9200"))
    return LocalCluster(name=name, http_port=port, transport_port=port + 100)


def ensure_elasticsearch() -> list[str]:
    """Node URLs of a healthy Elasticsearch: ``ES_URL``, or the local cluster started now."""
    if url := configured_url():
        return url.split(",")
    cluster = local_cluster()
    cluster.start()
    return cluster.urls


def client_options() -> dict[str, Any]:
    """Authentication and TLS options from the environment."""
    options: dict[str, Any] = {}
    if api_key := os.environ.get("ES_API_KEY"):
        options["api_key"] = api_key
    elif (user := os.environ.get("ES_USERNAME")) and (password := os.environ.get("ES_PASSWORD")):
        options["basic_auth"] = (user, password)
    if ca_certs := os.environ.get("ES_CA_CERTS"):
        options["ca_certs"] = ca_certs
    return options


def connect(urls: list[str] | str | None = None, **options: Any) -> Elasticsearch:
    """A sync client to ``urls`` (default: ``ES_URL`` or the local cluster's nodes)."""
    if urls is None:
        urls = configured_url() or ",".join(local_cluster().urls)
    hosts = urls.split(",") if isinstance(urls, str) else urls
    return Elasticsearch(
        hosts,
        serializers=serializers(),
        request_timeout=options.pop("request_timeout", 30),
        retry_on_timeout=True,
        max_retries=options.pop("max_retries", 3),
        **{**client_options(), **options},
    )
