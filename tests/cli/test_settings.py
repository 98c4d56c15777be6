"""The commands take their configuration from the environment, through the one settings model.

Each test runs a real entry point (`autotag serve` as a process, the others through
``cli.main.main``) against the session's real node, configured only by variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from cli.main import main
from indexer.synthetic import write_dataset
from indexer.synthetic.dataset import MANIFEST_FILE
from store.provision import free_port

pytestmark = pytest.mark.es


@pytest.fixture
def configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean environment with an empty autotag cache; returns the cache folder."""
    for name in ("ES_URL", "AUTOTAG_ES_URL", "AUTOTAG_INDEX", "AUTOTAG_ES_PORT"):
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("AUTOTAG_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_serve_with_autotag_es_url_uses_that_node_and_starts_no_cluster(
    configured: Path, es_url: str, es: Elasticsearch, item_index: str
) -> None:
    es.index(index=item_index, id="one", document={"item_id": "one"}, refresh=True)
    port = free_port()
    env = {**os.environ, "AUTOTAG_ES_URL": es_url, "AUTOTAG_INDEX": item_index}
    env.pop("ES_URL", None)
    autotag = Path(sys.executable).parent / "autotag"
    server = subprocess.Popen(
        [str(autotag), "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        body = json.dumps({"query": 'dataset != "x"'}).encode()
        answer = None
        deadline = time.monotonic() + 90
        while answer is None and time.monotonic() < deadline and server.poll() is None:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/v1/count",
                data=body,
                headers={"content-type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    answer = json.loads(response.read())
            except OSError:
                time.sleep(0.5)
        assert answer is not None, "autotag serve did not answer"
        assert answer["count"] == 1  # the item in AUTOTAG_INDEX on the AUTOTAG_ES_URL node
        assert not (configured / "clusters").exists()  # no local cluster was provisioned
        assert not (configured / "elasticsearch").exists()
    finally:
        server.terminate()
        output = server.communicate(timeout=30)[0].decode()
    assert "Traceback" not in output


@pytest.mark.parametrize("variable", ["AUTOTAG_ES_URL", "ES_URL"])
def test_es_status_reports_the_configured_node(
    variable: str,
    configured: Path,
    es_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(variable, es_url)
    assert main(["es", "status"]) == 0
    assert capsys.readouterr().out.startswith(f"{es_url}: ")
    assert not configured.exists()


def test_es_status_uses_the_configured_port_and_cache(
    configured: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    monkeypatch.setenv("AUTOTAG_ES_PORT", str(port))
    assert main(["es", "status"]) == 1  # nothing runs there
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().out


def test_import_writes_into_the_configured_node_and_index(
    configured: Path,
    es_url: str,
    es: Elasticsearch,
    item_index: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_INDEX", item_index)
    monkeypatch.setenv("AUTOTAG_ES_BULK_TIMEOUT", "45")
    source = tmp_path / "predictions.jsonl"
    line = {"item_id": "a", "image_predictions": [{"label": "weather_clear", "score": 0.9}]}
    source.write_text(json.dumps(line) + "\n")
    argv = ["import", str(source), "--training-set", "ext_v1"]
    assert main([*argv, "--failures-file", str(tmp_path / "f.jsonl")]) == 0
    es.indices.refresh(index=item_index)
    assert es.get(index=item_index, id="a")["_source"]["tagged_by"] == ["ext_v1"]


def test_index_writes_into_the_configured_index_and_caches_under_the_cache(
    configured: Path,
    es_url: str,
    es: Elasticsearch,
    item_index: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_INDEX", item_index)
    write_dataset(tmp_path / "drives", 2, seed=7, dataset="drives")
    manifest = tmp_path / "drives" / MANIFEST_FILE
    argv = ["index", str(manifest), "--training-set", "tiny_v1", "--demo-models", "--no-progress"]
    argv += ["--workers", "0", "--failures-file", str(tmp_path / "f.jsonl")]
    assert main(argv) == 0
    es.indices.refresh(index=item_index)
    assert es.count(index=item_index)["count"] == 2
    assert list((configured / "text-embeddings").glob("clip-text-*.safetensors"))


def test_a_bad_setting_is_a_clear_message(
    configured: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AUTOTAG_ES_HEAP", "lots")
    assert main(["es", "status"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("autotag: setting AUTOTAG_ES_HEAP: String should match pattern")
    assert "Traceback" not in error
