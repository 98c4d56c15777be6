"""``autotag embed`` on a real node: imported items (no embeddings) get theirs from their uri."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from cli.main import main
from indexer.synthetic.dataset import MANIFEST_FILE, write_dataset
from store import schema as f
from store.embeddings import read_embedding_model

pytestmark = pytest.mark.es


def test_embed_backfills_imported_items(
    tmp_path: Path,
    es: Elasticsearch,
    es_url: str,
    item_index: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_dataset(tmp_path / "world", 6, 77)
    rows = [
        json.loads(line)
        for line in (tmp_path / "world" / MANIFEST_FILE).read_text().split("\n")
        if line
    ]
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(
        "\n".join(
            json.dumps({**row, "image_predictions": [{"label": "glare", "score": 0.5}]})
            for row in rows
        )
    )
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    common = ["--index", item_index, "--failures-file", str(tmp_path / "failures.jsonl")]
    assert main(["import", str(predictions), "--training-set", "ext", *common]) == 0
    es.indices.refresh(index=item_index)
    assert es.count(index=item_index, query={"exists": {"field": f.EMBEDDING}})["count"] == 0

    assert main(["embed", "--demo-models", "--workers", "0", "--no-progress", *common]) == 0
    assert "embedded" in capsys.readouterr().out
    es.indices.refresh(index=item_index)
    assert es.count(index=item_index, query={"exists": {"field": f.EMBEDDING}})["count"] == 6
    model = read_embedding_model(es, item_index)
    assert model is not None
    assert model.name.startswith("demo:open_clip:")
    doc = es.get(index=item_index, id=rows[0]["item_id"])["_source"]
    assert [p["label"] for p in doc["image_predictions"]] == ["glare"]  # untouched

    assert main(["embed", "--no-progress", *common]) == 2  # no model chosen
    assert main(["embed", "--demo-models", "--query", "scor >", "--no-progress", *common]) == 2
