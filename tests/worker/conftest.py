"""Worker fixtures: synthetic images made once, the demo models loaded once per session."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from indexer.synthetic.dataset import MANIFEST_FILE, write_dataset
from store.settings import StoreSettings
from worker.batch import ModelCache
from worker.loop import Worker
from worker.settings import WorkerSettings

IMAGES = 24


@pytest.fixture(scope="session")
def scenes(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Manifest rows (item_id, uri, dataset, metadata) of synthetic driving scenes."""
    folder = tmp_path_factory.mktemp("scenes")
    write_dataset(folder, IMAGES, seed=17, dataset="drives")
    lines = (folder / MANIFEST_FILE).read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> ModelCache:
    return ModelCache("cpu", tmp_path_factory.mktemp("cache"))


MakeWorker = Callable[..., Worker]


@pytest.fixture
def make_worker(
    es_url: str, item_index: str, runs_index: str, model_cache: ModelCache
) -> MakeWorker:
    def make(**settings: Any) -> Worker:
        configured = WorkerSettings(
            es_url=es_url,
            index=item_index,
            runs_index=runs_index,
            worker_device="cpu",
            worker_poll_s=0.1,
            **settings,
        )
        return Worker(configured, models=model_cache)

    return make


@pytest.fixture
def store_settings(es_url: str, item_index: str, runs_index: str) -> StoreSettings:
    return StoreSettings(es_url=es_url, index=item_index, runs_index=runs_index)
