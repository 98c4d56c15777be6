"""What a run did: the summary, the failures (and their JSONL file), the writer it drives.

Shared by ``index`` (:mod:`indexer.pipeline`) and ``import`` (:mod:`indexer.importer`), so both
report the same way and neither imports the other.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from rich.table import Table

from store.writer import ItemPredictions, WriteResult


class Writer(Protocol):
    """What the pipeline needs of :class:`~store.writer.PredictionWriter`."""

    training_set: str
    force: bool

    def already_tagged(self, item_ids: Sequence[str]) -> set[str]: ...
    def write(self, batch: Sequence[ItemPredictions]) -> WriteResult: ...


@dataclass(frozen=True)
class Failure:
    """An item that could not be tagged: which, where it failed, and why."""

    item_id: str | None
    uri: str | None
    stage: str  # "source", "decode", "predict" or "write"
    reason: str


@dataclass
class RunSummary:
    """What a run did; ``seen == tagged + skipped + failed`` counting items."""

    seen: int = 0
    tagged: int = 0
    skipped: int = 0
    failed: int = 0
    predictions: int = 0
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    aborted: str | None = None

    def count_writes(self, result: WriteResult) -> None:
        """Add the writer's counts (its failures reach ``failures`` one by one, with their URI)."""
        self.tagged += result.written
        self.skipped += result.skipped
        self.predictions += result.predictions

    @property
    def items_per_second(self) -> float:
        return self.tagged / self.seconds if self.seconds > 0 else 0.0

    def table(self, title: str = "autotag index") -> Table:
        table = Table(title=title, show_header=False)
        table.add_column(style="bold")
        table.add_column(justify="right")
        for name, value in (
            ("items seen", self.seen),
            ("tagged", self.tagged),
            ("skipped (already tagged)", self.skipped),
            ("failed", self.failed),
            ("predictions written", self.predictions),
            ("time", f"{self.seconds:.1f} s"),
            ("items/s", f"{self.items_per_second:.1f}"),
        ):
            table.add_row(name, str(value))
        return table


class FailureLog:
    """Appends failures to a JSONL file, one line each, flushed at once (thread-safe)."""

    def __init__(self, path: Path | None, *, training_set: str) -> None:
        self.path = path
        self.training_set = training_set
        self._lock = threading.Lock()
        self._stream: Any = None

    def __enter__(self) -> FailureLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def record(self, failure: Failure) -> None:
        if self.path is None:
            return
        line = json.dumps(
            {
                "item_id": failure.item_id,
                "uri": failure.uri,
                "stage": failure.stage,
                "reason": failure.reason,
                "training_set": self.training_set,
                "at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
        )
        with self._lock:
            if self._stream is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._stream = self.path.open("a", encoding="utf-8")
            self._stream.write(line + "\n")
            self._stream.flush()

    def close(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None


def load_failures(path: Path) -> list[Mapping[str, Any]]:
    """Read a failures file (tolerating a torn last line from a killed run)."""
    records: list[Mapping[str, Any]] = []
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records
