"""Provide a real Elasticsearch node for the test session.

In order: ``ES_URL`` if set; else a testcontainers Elasticsearch container if a Docker engine
answers; else a local single-node cluster started by ``store.provision`` on free ports, torn
down (data included) at the end of the session.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from store.provision import ES_VERSION, LocalCluster, free_port

ES_IMAGE = f"docker.elastic.co/elasticsearch/elasticsearch:{ES_VERSION}"


def docker_answers() -> bool:
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@contextmanager
def _container() -> Iterator[str]:
    from testcontainers.elasticsearch import ElasticSearchContainer

    container = ElasticSearchContainer(ES_IMAGE, mem_limit="2g")
    container.with_env("xpack.security.enabled", "false")
    container.with_env("ES_JAVA_OPTS", "-Xms1g -Xmx1g")
    with container:
        yield container.get_url()


@contextmanager
def _local_cluster() -> Iterator[str]:
    http = free_port()
    cluster = LocalCluster(
        name=f"autotag-test-{uuid.uuid4().hex[:8]}",
        http_port=http,
        transport_port=free_port(),
        heap=os.environ.get("AUTOTAG_TEST_ES_HEAP", "768m"),
    )
    try:
        cluster.start()
        yield cluster.url
    finally:
        cluster.destroy()


@contextmanager
def provide_node() -> Iterator[tuple[str, str]]:
    """Yields (url, how it was provided)."""
    if url := os.environ.get("ES_URL"):
        yield url, "ES_URL"
    elif docker_answers():
        with _container() as url:
            yield url, "testcontainers"
    else:
        with _local_cluster() as url:
            yield url, "local cluster (store.provision)"
