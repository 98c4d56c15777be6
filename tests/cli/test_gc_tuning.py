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


def _collections_while_allocating(containers: int) -> int:
    """How many collections (any generation) run while ``containers`` lists are created."""
    before: int = sum(generation["collections"] for generation in gc.get_stats())
    young: list[list[int]] = [[] for _ in range(containers)]
    after: int = sum(generation["collections"] for generation in gc.get_stats())
    del young
    return after - before


@pytest.mark.usefixtures("restored_gc")
def test_bulk_tuning_lets_young_objects_pile_up_before_a_collection() -> None:
    gc.set_threshold(700, 10, 10)  # CPython's default: a collection every 700 allocations
    assert _collections_while_allocating(20_000) > 0
    tune_gc_for_bulk_work()
    assert _collections_while_allocating(20_000) == 0


@pytest.mark.usefixtures("restored_gc")
def test_cycles_are_still_collected_after_tuning() -> None:
    tune_gc_for_bulk_work()

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2
