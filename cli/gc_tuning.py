"""Garbage-collector settings for bulk jobs (``autotag index``, ``autotag import``, benchmarks).

Building item documents allocates millions of small, short-lived dicts. With CPython's default
thresholds (700, 10, 10) the cyclic collector runs every few dozen items, and its older
generations rescan everything alive: the batches in flight, loaded models, imported modules.
That rescanning, not document building, was most of the writer's Python time; with the
thresholds below it mostly goes away (measured with ``bench/scale.py``; the figures are in
``docs/benchmarks.md``).

Reference counting still frees almost everything at once; the cyclic collector only has to
find cycles, which document building does not create, so running it less often costs little
memory.
"""

from __future__ import annotations

import gc
from typing import Final

BULK_GC_THRESHOLDS: Final = (50_000, 20, 100)


def tune_gc_for_bulk_work() -> None:
    """Freeze what is alive now (modules, models) and collect young objects less often.

    Process-wide, so only for processes that exist to run a bulk job; call it once set-up is
    done (models loaded), so the frozen objects are the long-lived ones.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*BULK_GC_THRESHOLDS)
