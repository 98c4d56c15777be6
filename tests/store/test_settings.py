"""Each cluster setting, set in the environment, reaches what it configures.

The entry points build :class:`StoreSettings` (or the API's extension of it) once and hand it to
the builders below: the sync client (`index`, `import`, `up`, `es status`), the API's async
client, and the local cluster (`up`, `serve`, `es`, the test node). So a variable that reaches
the builder reaches every entry point; `tests/cli/test_settings.py` runs the commands themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import certifi
import pytest

from api.es_transport import make_client
from api.settings import Settings
from indexer.clip_tagger import default_cache_dir as text_embedding_cache
from store.connection import connect, ensure_elasticsearch, local_cluster, node_urls
from store.provision import LocalCluster
from store.settings import DEFAULT_CLUSTER_NAME, DEFAULT_HTTP_PORT, StoreSettings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [*StoreSettings.model_fields, "ES_URL", "ES_API_KEY", "ES_USERNAME"]:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(f"AUTOTAG_{name.upper()}", raising=False)
    for bare in ("ES_PASSWORD", "ES_CA_CERTS", "ES_VERIFY_CERTS", "ES_JAVA_HOME", "MAVEN_REPO"):
        monkeypatch.delenv(bare, raising=False)
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path / "cache"))


@pytest.mark.parametrize("variable", ["AUTOTAG_ES_URL", "ES_URL"])
def test_a_configured_url_is_used_and_no_local_cluster_is_started(
    variable: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(variable, "http://127.0.0.1:9555, http://127.0.0.1:9556")
    settings = StoreSettings()
    hosts = ["http://127.0.0.1:9555", "http://127.0.0.1:9556"]
    assert node_urls(settings) == hosts
    assert ensure_elasticsearch(settings) == hosts
    assert not (tmp_path / "cache").exists()  # nothing provisioned
    for client in (connect(settings=settings), make_client(Settings())):
        assert sorted(n.base_url for n in client.transport.node_pool.all()) == hosts


def test_the_prefixed_url_wins_over_the_bare_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ES_URL", "http://127.0.0.1:1111")
    monkeypatch.setenv("AUTOTAG_ES_URL", "http://127.0.0.1:2222")
    assert node_urls(StoreSettings()) == ["http://127.0.0.1:2222"]


def test_without_a_url_the_local_cluster_is_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTAG_ES_PORT", "9633")
    assert node_urls(StoreSettings()) == ["http://127.0.0.1:9633"]
    assert [n.base_url for n in make_client(Settings()).transport.node_pool.all()] == [
        "http://127.0.0.1:9633"
    ]


@pytest.mark.parametrize("prefix", ["AUTOTAG_", ""])
def test_credentials_reach_both_clients(prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"{prefix}ES_API_KEY", "a2V5OnNlY3JldA==")
    for client in (connect(settings=StoreSettings()), make_client(Settings())):
        assert client._headers["authorization"] == "ApiKey a2V5OnNlY3JldA=="
    monkeypatch.delenv(f"{prefix}ES_API_KEY")
    monkeypatch.setenv(f"{prefix}ES_USERNAME", "elastic")
    monkeypatch.setenv(f"{prefix}ES_PASSWORD", "changeme")
    for client in (connect(settings=StoreSettings()), make_client(Settings())):
        assert client._headers["authorization"] == "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="
    assert "changeme" not in repr(Settings())


def test_tls_settings_reach_both_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = certifi.where()  # any real CA bundle
    monkeypatch.setenv("AUTOTAG_ES_URL", "https://127.0.0.1:9200")
    monkeypatch.setenv("ES_CA_CERTS", str(bundle))
    monkeypatch.setenv("ES_VERIFY_CERTS", "false")
    assert StoreSettings().client_options()["ca_certs"] == bundle
    for client in (connect(settings=StoreSettings()), make_client(Settings())):
        (node,) = client.transport.node_pool.all()
        assert node.config.verify_certs is False
        assert node.config.ca_certs == bundle


def test_timeouts_and_pool_size_reach_both_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTAG_ES_REQUEST_TIMEOUT", "3.5")
    monkeypatch.setenv("AUTOTAG_ES_MAX_CONNECTIONS", "7")
    monkeypatch.setenv("AUTOTAG_ES_BULK_TIMEOUT", "123")
    settings = StoreSettings()
    for client in (connect(settings=settings), make_client(Settings())):
        assert client._request_timeout == 3.5
        (node,) = client.transport.node_pool.all()
        assert node.config.connections_per_node == 7
    assert settings.es_bulk_timeout == 123  # used by bulk jobs: tests/cli/test_settings.py


def test_the_index_setting_is_shared_by_the_api_and_the_jobs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AUTOTAG_INDEX", "drives")
    assert StoreSettings().index == Settings().index == "drives"


def test_local_cluster_settings_shape_a_new_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    java_home, repo = tmp_path / "jdk", tmp_path / "m2"
    monkeypatch.setenv("AUTOTAG_ES_PORT", "9700")
    monkeypatch.setenv("AUTOTAG_ES_HEAP", "384m")
    monkeypatch.setenv("AUTOTAG_ES_VERSION", "9.5.0")
    monkeypatch.setenv("AUTOTAG_ES_USER", "es-runner")
    monkeypatch.setenv("ES_JAVA_HOME", str(java_home))
    monkeypatch.setenv("MAVEN_REPO", str(repo))
    cluster = local_cluster(StoreSettings())
    assert (cluster.http_port, cluster.transport_port) == (9700, 9800)
    assert (cluster.heap, cluster.version, cluster.service_user) == ("384m", "9.5.0", "es-runner")
    assert (cluster.java_home, cluster.maven_repo) == (java_home, repo)
    assert cluster.cache_dir == tmp_path / "cache"


def test_explicit_settings_apply_on_top_of_a_recorded_cluster(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    LocalCluster(
        name=DEFAULT_CLUSTER_NAME, http_port=9300, transport_port=9400, cache_dir=tmp_path / "cache"
    )._save()
    recorded = local_cluster(StoreSettings())
    assert (recorded.http_port, recorded.transport_port, recorded.heap) == (9300, 9400, "1g")
    monkeypatch.setenv("AUTOTAG_ES_PORT", "9500")
    monkeypatch.setenv("AUTOTAG_ES_HEAP", "2g")
    moved = local_cluster(StoreSettings())
    assert (moved.http_port, moved.transport_port, moved.heap) == (9500, 9600, "2g")
    saved = json.loads(
        (tmp_path / "cache" / "clusters" / DEFAULT_CLUSTER_NAME / "cluster.json").read_text()
    )
    assert set(saved) == {"name", "nodes", "http_port", "transport_port", "heap", "version"}


def test_the_cache_setting_holds_clusters_and_embeddings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTOTAG_CACHE", str(tmp_path / "elsewhere"))
    assert (
        local_cluster(StoreSettings()).root
        == tmp_path / "elsewhere" / "clusters" / DEFAULT_CLUSTER_NAME
    )
    assert text_embedding_cache() == tmp_path / "elsewhere" / "text-embeddings"
    monkeypatch.delenv("AUTOTAG_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    expected = Path("/var/cache/autotag") if _root() else tmp_path / "xdg" / "autotag"
    assert StoreSettings().cache_dir() == expected


def test_bad_values_are_refused_with_the_variable_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOTAG_ES_HEAP", "lots")
    with pytest.raises(ValueError, match="es_heap"):
        StoreSettings()
    monkeypatch.delenv("AUTOTAG_ES_HEAP")
    monkeypatch.setenv("AUTOTAG_ES_PORT", "0")
    with pytest.raises(ValueError, match="es_port"):
        StoreSettings()


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = StoreSettings()
    assert settings.es_url is None
    assert settings.es_port == DEFAULT_HTTP_PORT
    assert settings.es_request_timeout == 10.0
    assert settings.index == "autotag-items"


def _root() -> bool:
    import os

    return os.geteuid() == 0
