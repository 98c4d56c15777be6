"""Connect to Elasticsearch: the configured URL when given, else the local cluster autotag runs.

Everything comes from :class:`store.settings.StoreSettings`, built by the entry point: the URL
(``AUTOTAG_ES_URL`` or ``ES_URL``), credentials (never printed), timeouts, and how the local
cluster is provisioned.
"""

from __future__ import annotations

from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from store.provision import LocalCluster
from store.settings import DEFAULT_CLUSTER_NAME, StoreSettings


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


def local_cluster(settings: StoreSettings, name: str = DEFAULT_CLUSTER_NAME) -> LocalCluster:
    """The local cluster ``name`` as last started (or as it would first be started), with every
    local-cluster setting the user set explicitly applied on top."""
    local: dict[str, Any] = {
        "service_user": settings.es_user,
        "java_home": settings.es_java_home,
        "maven_repo": settings.maven_repo,
        "cache_dir": settings.cache_dir(),
    }
    cluster = LocalCluster.load(name, **local) or LocalCluster(
        name=name,
        http_port=settings.es_port,
        transport_port=settings.es_port + 100,
        heap=settings.es_heap,
        version=settings.es_version,
        **local,
    )
    chosen = settings.model_fields_set
    if "es_port" in chosen and settings.es_port != cluster.http_port:
        cluster.http_port, cluster.transport_port = settings.es_port, settings.es_port + 100
    if "es_heap" in chosen:
        cluster.heap = settings.es_heap
    if "es_version" in chosen:
        cluster.version = settings.es_version
    return cluster


def ensure_elasticsearch(settings: StoreSettings) -> list[str]:
    """Node URLs of a healthy Elasticsearch: the configured URL, or the local cluster, started
    now if it is not running."""
    if (hosts := settings.es_hosts()) is not None:
        return hosts
    cluster = local_cluster(settings)
    cluster.start()
    return cluster.urls


def node_urls(settings: StoreSettings) -> list[str]:
    """The configured URL, or the local cluster's nodes (whether or not they run)."""
    return settings.es_hosts() or local_cluster(settings).urls


def connect(
    urls: list[str] | str | None = None,
    *,
    settings: StoreSettings | None = None,
    **options: Any,
) -> Elasticsearch:
    """A sync client to ``urls`` (default: the configured URL or the local cluster's nodes).

    ``settings`` (default: read from the environment now) gives credentials, TLS, the pool size
    and the timeout; ``options`` override any client argument (bulk jobs pass
    ``request_timeout=settings.es_bulk_timeout``).
    """
    settings = settings or StoreSettings()
    if urls is None:
        urls = node_urls(settings)
    hosts = urls.split(",") if isinstance(urls, str) else urls
    return Elasticsearch(
        hosts,
        serializers=serializers(),
        request_timeout=options.pop("request_timeout", settings.es_request_timeout),
        retry_on_timeout=True,
        max_retries=options.pop("max_retries", 3),
        connections_per_node=settings.es_max_connections,
        **{**settings.client_options(), **options},
    )
