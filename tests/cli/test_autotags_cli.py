"""``autotag autotags create|list|score|refine|delete`` on a real node (the jobs are tested in
tests/autotags; this checks the command reaches them and reports)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from elasticsearch import Elasticsearch

from cli.main import main
from embeddings.clip import ClipEncoder
from indexer.models import TINY_CLIP
from store.embeddings import record_embedding_model
from store.mapping import index_settings, item_mapping
from tests.embedded_world import scene_items

torch.set_num_threads(min(2, torch.get_num_threads()))
pytestmark = pytest.mark.es


@pytest.fixture
def index(es: Elasticsearch) -> Iterator[str]:
    encoder = ClipEncoder("", TINY_CLIP)
    name = f"test-cli-autotags-{uuid.uuid4().hex[:8]}"
    es.indices.create(index=name, mappings=item_mapping(), settings=index_settings())
    record_embedding_model(es, name, encoder.identity())
    items, _ = scene_items(encoder, 40, 3)
    operations: list[dict[str, Any]] = []
    for item in items:
        operations += [{"index": {"_index": name, "_id": item["item_id"]}}, item]
    assert not es.bulk(operations=operations, refresh=True)["errors"]
    yield name
    es.indices.delete(index=[name, f"{name}-autotags"], ignore_unavailable=True)


def test_the_autotags_command(
    es: Elasticsearch,
    es_url: str,
    index: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AUTOTAG_ES_URL", es_url)
    base = ["autotags", "--index", index]
    create = [*base, "create", "night", "--positives-query", "image_prefix:time_of_day_night"]
    assert main([*create, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "autotag:night@1" in out
    assert "40/40" in out
    assert "done" in out
    assert main([*base, "list", "--no-progress"]) == 0
    assert "autotag:night@1" in capsys.readouterr().out
    assert main([*base, "score", "night", "--no-progress"]) == 0  # nothing left
    assert main([*base, "refine", "night", "--no-progress"]) == 1  # nothing reviewed yet
    assert "accept or reject some" in " ".join(capsys.readouterr().err.split())
    assert main([*base, "delete", "night", "--no-progress"]) == 0
    assert "40 items changed" in capsys.readouterr().out
    assert main([*base, "delete", "night", "--no-progress"]) == 1
    assert "no autotag `night`" in capsys.readouterr().err
