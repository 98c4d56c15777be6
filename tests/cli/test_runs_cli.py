"""``autotag runs submit|list|watch|cancel`` and ``autotag watch DIR`` against a real node."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from PIL import Image

from cli.main import main
from cli.watch import FolderWatcher
from store import runs as r
from store.calls import drive
from store.model_choice import DEMO_SET
from store.run_claims import RunStore
from store.runs import NewItem, Selection, SelectionKind
from store.settings import StoreSettings

pytestmark = pytest.mark.es


@pytest.fixture
def configured(
    monkeypatch: pytest.MonkeyPatch, es_url: str, item_index: str, runs_index: str
) -> StoreSettings:
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_INDEX", item_index)
    monkeypatch.setenv("AUTOTAG_RUNS_INDEX", runs_index)
    return StoreSettings()


def _run(es: Elasticsearch, settings: StoreSettings, dataset: str, training_set: str = "t") -> str:
    run = r.new_run(
        selection=Selection(SelectionKind.DATASET, dataset=dataset),
        models=DEMO_SET,
        training_set=training_set,
        items_index=settings.index,
    )
    drive(es, r.submit_run(settings.runs_index, run))
    return str(run[r.RUN_ID])


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 24), (200, 10, 10)).save(path)


def test_watching_a_run_to_its_end_and_cancelling(
    es: Elasticsearch, configured: StoreSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    done = _run(es, configured, "empty")  # an empty selection: done as soon as it is planned
    queued = _run(es, configured, "empty", training_set="other")
    RunStore(es, configured.runs_index).plan(done)
    assert main(["runs", "watch", done, "--interval", "0.1"]) == 0
    out = capsys.readouterr()
    assert f"run {done}" in out.out
    assert "done" in out.err  # the progress bar's state
    assert main(["runs", "list"]) == 0
    listed = capsys.readouterr().out
    assert done in listed
    assert queued in listed
    assert main(["runs", "cancel", done]) == 1
    assert "already finished: done" in capsys.readouterr().err
    assert main(["runs", "cancel", queued]) == 0
    assert main(["runs", "watch", queued]) == 1  # cancelled: not a success
    assert main(["runs", "watch", "run-nope"]) == 2


def test_submitting_checks_models_and_query_first_and_takes_a_saved_slice(
    es: Elasticsearch, configured: StoreSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    refused = [
        (["--dataset", "d", "--models", "dmeo"], 2, "did you mean 'demo'"),
        (["--query", "object_prefx:car"], 1, "^"),
        (["--query", 'similar:"rain"'], 1, "only ranks search hits"),
    ]
    for extra, code, message in refused:
        assert main(["runs", "submit", "--training-set", "v1", *extra]) == code
        assert message in capsys.readouterr().err
    assert drive(es, r.list_runs(configured.runs_index)) == []  # nothing was queued

    assert main(["slices", "put", "first", "dataset = d1"]) == 0
    capsys.readouterr()
    assert main(["runs", "submit", "--training-set", "v1", "--query", 'slice = "first"']) == 0
    run_id = capsys.readouterr().out.strip()
    [view] = drive(es, r.list_runs(configured.runs_index))
    assert view["run_id"] == run_id
    assert view["selection"]["kind"] == "query"
    assert view["selection"]["query"] == "dataset = d1"  # the slice, written out


def test_watch_registers_a_folder_and_sets_its_auto_tagging(
    es: Elasticsearch, configured: StoreSettings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drops = tmp_path / "drops"
    _image(drops / "a.png")
    _image(drops / "night" / "b.jpg")
    (drops / "notes.txt").write_text("not an image")
    argv = ["watch", str(drops), "--once", "--models", "demo", "--training-set", "auto_v1"]
    assert main(argv) == 0
    assert "registered 2 new image(s)" in capsys.readouterr().err
    es.indices.refresh(index=configured.index)
    doc = es.get(index=configured.index, id="drops/night/b.jpg")["_source"]
    assert doc["dataset"] == "drops"
    assert doc["uri"] == (drops / "night" / "b.jpg").as_uri()
    runs = drive(es, r.list_runs(configured.runs_index))
    assert [(x["origin"], x["training_set"], x["selection"]["items"]) for x in runs] == [
        ("incremental", "auto_v1", 2)
    ]
    assert main(["watch", str(drops), "--once"]) == 0  # nothing new
    assert "registered" not in capsys.readouterr().err
    assert main(["watch", str(drops), "--once", "--models", "nope", "--training-set", "x"]) == 2
    assert "unknown models 'nope'" in capsys.readouterr().err


def test_a_file_is_registered_once_it_has_settled(
    es: Elasticsearch, configured: StoreSettings, tmp_path: Path
) -> None:
    drops = tmp_path / "drops"
    drops.mkdir()
    watcher = FolderWatcher(es, configured, drops, dataset="drops", settle_s=0.5)
    _image(drops / "a.png")
    assert watcher.scan().created == []  # first seen: it may still be being written
    time.sleep(0.6)
    assert watcher.scan().created == ["drops/a.png"]
    _image(drops / "b.png")
    time.sleep(0.6)
    assert watcher.scan().created == []  # old enough, but seen once only
    with (drops / "b.png").open("ab") as grow:
        grow.write(b"\0")  # still growing between two scans
    os.utime(drops / "b.png")
    assert watcher.scan().created == []
    time.sleep(0.6)
    assert watcher.scan().created == ["drops/b.png"]
    assert watcher.scan().created == []
    # Registering the same file again elsewhere is harmless: it exists.
    again = drive(
        es,
        r.register_items(
            configured.index,
            configured.runs_index,
            [NewItem("drops/a.png", (drops / "a.png").as_uri(), "drops")],
        ),
    )
    assert again.existing == ["drops/a.png"]


def test_a_malformed_models_file_stops_the_service_at_start(
    monkeypatch: pytest.MonkeyPatch, es_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models = tmp_path / "models.toml"
    models.write_text("[vitb32]\nclip_weight = 'x'\n")
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    monkeypatch.setenv("AUTOTAG_MODELS_FILE", str(models))
    assert main(["serve", "--port", "1"]) == 2
    assert "unknown keys ['clip_weight']" in capsys.readouterr().err
