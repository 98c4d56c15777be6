"""``autotag watch DIR``: register the images dropped into a folder, as they arrive.

Polling, not inotify: it works the same on network file systems and in containers, and a scan
of a folder of some thousand files costs milliseconds. A file is registered once its size and
modification time have not changed between two scans and are at least ``settle`` seconds old,
so a copy still being written is not read half-way. Registration is the API's
(``store.runs.register_items``): items already there are left alone, and datasets with an
auto-tagging setting get their new items queued for the workers.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Final

from elasticsearch import Elasticsearch
from rich.console import Console

from indexer.sources import SourceItem, scan_folder
from store.calls import drive
from store.model_choice import CatalogueError, UnknownModelsError, choose, load_catalogue
from store.model_choice import weight_problems as problems_of
from store.runs import DatasetAutotag, NewItem, Registration, put_dataset_autotag, register_items
from store.settings import StoreSettings

REGISTER_CHUNK: Final = 500
DEFAULT_SETTLE_S: Final = 1.0


def set_autotag(
    client: Elasticsearch, settings: StoreSettings, dataset: str, models: str, training_set: str
) -> str | None:
    """Make ``models`` tag the dataset's new items; the problem when they cannot."""
    try:
        chosen = choose(load_catalogue(settings.models_file), models)
    except (CatalogueError, UnknownModelsError) as error:
        return str(error)
    problems = problems_of(chosen)
    if problems:
        return "; ".join(problems)
    drive(
        client,
        put_dataset_autotag(settings.runs_index, DatasetAutotag(dataset, chosen, training_set)),
    )
    return None


class FolderWatcher:
    """Registers a folder's new images, scan after scan."""

    def __init__(
        self,
        client: Elasticsearch,
        settings: StoreSettings,
        folder: Path,
        *,
        dataset: str,
        console: Console | None = None,
        settle_s: float = DEFAULT_SETTLE_S,
    ) -> None:
        self.client = client
        self.settings = settings
        self.folder = folder
        self.dataset = dataset
        self.console = console or Console(stderr=True)
        self.settle_s = settle_s
        self.known: set[str] = set()
        self._last: dict[str, tuple[int, float]] = {}

    def _ready(self, item: SourceItem, settle_s: float) -> bool:
        assert item.path is not None
        try:
            stat = item.path.stat()
        except OSError:  # gone between the listing and now
            return False
        signature = (stat.st_size, stat.st_mtime)
        steady = self._last.get(item.item_id) == signature
        self._last[item.item_id] = signature
        return settle_s <= 0 or (steady and time.time() - stat.st_mtime >= settle_s)

    def scan(self, settle_s: float | None = None) -> Registration:
        """Register the images that appeared (and settled) since the last scan."""
        settle = self.settle_s if settle_s is None else settle_s
        listed = scan_folder(self.folder, dataset=self.dataset)
        ready = [
            item
            for item in listed.items
            if item.item_id not in self.known and self._ready(item, settle)
        ]
        total = Registration()
        for start in range(0, len(ready), REGISTER_CHUNK):
            chunk = ready[start : start + REGISTER_CHUNK]
            new = [
                NewItem(item.item_id, item.uri, item.dataset, uploaded_at=item.uploaded_at)
                for item in chunk
            ]
            done = drive(
                self.client, register_items(self.settings.index, self.settings.runs_index, new)
            )
            self.known.update(done.created, done.existing)
            for item_id in (*done.created, *done.existing):
                self._last.pop(item_id, None)
            total.created += done.created
            total.existing += done.existing
            total.failed += done.failed
            total.runs += [run for run in done.runs if run not in total.runs]
        if total.created or total.failed:
            runs = f"; tagging in {', '.join(total.runs)}" if total.runs else ""
            self.console.print(
                f"registered {len(total.created)} new image(s), {len(total.existing)} already "
                f"there{runs}",
                highlight=False,
            )
        for item_id, reason in total.failed:
            self.console.print(
                f"[yellow]not registered[/yellow] {item_id}: {reason}", highlight=False
            )
        return total
