"""A heap of deadlines with lazy removal, shared by both engines. Time is always passed in."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class DeadlineHeap(Generic[K]):
    """Keys with deadlines. ``expire(now)`` returns the keys whose deadline has passed.

    Removing a key is O(1) (its heap entry is skipped when it surfaces), so calls that finish long
    before their deadline cost nothing extra.
    """

    __slots__ = ("_deadlines", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._deadlines: dict[K, float] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._deadlines)

    def set(self, key: K, deadline: float) -> None:
        self._deadlines[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), key))

    def get(self, key: K) -> float | None:
        """The deadline set for ``key``, or None."""
        return self._deadlines.get(key)

    def discard(self, key: K) -> None:
        self._deadlines.pop(key, None)
        if not self._deadlines:
            self._heap.clear()

    def next_deadline(self) -> float | None:
        heap = self._heap
        if not heap:  # the common case on the hot path: nothing has a deadline
            return None
        deadlines = self._deadlines
        while heap and deadlines.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def expire(self, now: float) -> list[K]:
        expired: list[K] = []
        while self._heap and self._heap[0][0] <= now:
            deadline, _, key = heapq.heappop(self._heap)
            if self._deadlines.get(key) == deadline:
                del self._deadlines[key]
                expired.append(key)
        return expired
