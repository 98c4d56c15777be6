"""The bulk-job GC settings: applied by the helper the CLI calls, and undoable in tests."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from cli.gc_tuning import BULK_GC_THRESHOLDS, tune_gc_for_bulk_work


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_bulk_tuning_freezes_live_objects_and_raises_thresholds() -> None:
    gc.unfreeze()
    long_lived = [{"model": "weights"} for _ in range(1000)]
    tune_gc_for_bulk_work()
    assert gc.get_threshold() == BULK_GC_THRESHOLDS
    assert gc.get_freeze_count() >= len(long_lived)
    assert BULK_GC_THRESHOLDS[0] > 700  # fewer young collections than CPython's default


@pytest.mark.usefixtures("restored_gc")
def test_cycles_are_still_collected_after_tuning() -> None:
    tune_gc_for_bulk_work()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
