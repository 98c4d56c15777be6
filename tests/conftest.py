"""Session-wide fixtures: a real Elasticsearch node and a fresh index per test.

Tests that need Elasticsearch are marked ``@pytest.mark.es``. When no node can be had they
fail in CI (``CI`` set) and are skipped elsewhere, with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from elasticsearch import Elasticsearch

from harness.elastic_node import provide_node
from store.connection import connect
from store.image_roots import roots_index_name
from store.mapping import index_settings, item_mapping
from store.provision import ProvisionError

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def es_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a real, healthy Elasticsearch node for the whole session."""
    with ExitStack() as stack:
        try:
            url, how = stack.enter_context(provide_node())
        except ProvisionError as error:
            message = f"no Elasticsearch node could be had: {error}"
            if os.environ.get("CI"):
                pytest.fail(message)
            pytest.skip(message)
        info = Elasticsearch(url).perform_request(
            "GET", "/_nodes/_local", params={"filter_path": "nodes.*.version,nodes.*.name"}
        )
        node = next(iter(info.body["nodes"].values()))
        line = f"[es] Elasticsearch {node['version']} ({node['name']}) at {url} via {how}"
        capture = request.config.pluginmanager.getplugin("capturemanager")
        with capture.global_and_fixture_disabled():
            print(f"\n{line}", flush=True)
        yield url


@pytest.fixture(scope="session")
def es(es_url: str) -> Iterator[Elasticsearch]:
    """A sync client to the session's node."""
    client = connect(es_url)
    yield client
    client.close()


@pytest.fixture
def item_index(es: Elasticsearch) -> Iterator[str]:
    """A fresh, uniquely named index with the product mapping; deleted afterwards."""
    name = f"test-items-{uuid.uuid4().hex[:12]}"
    es.indices.create(index=name, mappings=item_mapping(), settings=index_settings())
    yield name
    es.indices.delete(index=name, ignore_unavailable=True)
    # What `autotag index` records beside it (store/image_roots.py).
    es.indices.delete(index=roots_index_name(name), ignore_unavailable=True)


@pytest.fixture
def runs_index(es: Elasticsearch) -> Iterator[str]:
    """A uniquely named runs index (created by the first run or setting); deleted afterwards."""
    name = f"test-runs-{uuid.uuid4().hex[:12]}"
    yield name
    es.indices.delete(index=name, ignore_unavailable=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that uses the node is marked ``es`` (so `-m "not es"` is meaningful)."""
    for item in items:
        if "es_url" in getattr(item, "fixturenames", ()) and "es" not in item.keywords:
            item.add_marker(pytest.mark.es)
