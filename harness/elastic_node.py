"""Provide a real Elasticsearch node for the test session.

In order: the configured URL (``AUTOTAG_ES_URL`` or ``ES_URL``) if set; else a testcontainers
Elasticsearch container if a Docker engine answers; else a local single-node cluster started by
``store.provision`` on free ports, torn down (data included) at the end of the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from store.provision import LocalCluster, free_port
from store.settings import StoreSettings


def es_image(version: str) -> str:
    return f"docker.elastic.co/elasticsearch/elasticsearch:{version}"


def docker_answers() -> bool:
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextmanager
def _container(settings: StoreSettings) -> Iterator[str]:
    from testcontainers.community.elasticsearch import ElasticSearchContainer

    container = ElasticSearchContainer(es_image(settings.es_version), mem_limit="2g")
    container.with_env("xpack.security.enabled", "false")
    container.with_env("ES_JAVA_OPTS", "-Xms1g -Xmx1g")
    with container:
        # This testcontainers version has no get_url(): the mapped port is the way in.
        yield f"http://{container.get_container_host_ip()}:{container.get_exposed_port(9200)}"


@contextmanager
def _local_cluster(settings: StoreSettings) -> Iterator[str]:
    cluster = LocalCluster(
        name=f"autotag-test-{uuid.uuid4().hex[:8]}",
        http_port=free_port(),
        transport_port=free_port(),
        heap=os.environ.get("AUTOTAG_TEST_ES_HEAP", "768m"),
        version=settings.es_version,
        cache_dir=settings.cache_dir(),
        service_user=settings.es_user,
        java_home=settings.es_java_home,
        maven_repo=settings.maven_repo,
    )
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.destroy()


@contextmanager
def provide_node() -> Iterator[tuple[str, str]]:
    """Yields (url, how it was provided)."""
    settings = StoreSettings()
    if (hosts := settings.es_hosts()) is not None:
        yield hosts[0], "AUTOTAG_ES_URL/ES_URL"
    elif docker_answers():
        with _container(settings) as url:
            yield url, "testcontainers"
    else:
        with _local_cluster(settings) as url:
            yield url, "local cluster (store.provision)"
