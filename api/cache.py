"""Facts read from an index and kept briefly per process: they change rarely, and are read on
requests that must not pay for them each time (metadata types, the labels present)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerIndexCache(Generic[T]):
    """One value per index, loaded on first use and again once ``ttl_s`` seconds have passed.

    A load that raises caches nothing. Concurrent first uses may each load; the last one wins.
    """

    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[str, tuple[float, T]] = {}

    async def get(self, index: str, load: Callable[[], Awaitable[T]]) -> T:
        now = self._clock()
        entry = self._entries.get(index)
        if entry is None or entry[0] <= now:
            entry = (now + self.ttl_s, await load())
            self._entries[index] = entry
        return entry[1]
