"""Drives a sans-IO engine's deadlines: sleeps until ``next_deadline()``, then hands it the time."""

from __future__ import annotations

import math
from collections.abc import Callable

import anyio


class DeadlineTimer:
    """Calls ``fire(now)`` whenever the clock reaches ``next_deadline()``.

    Run :meth:`run` in a task; call :meth:`poke` after anything that may have set an earlier
    deadline (it costs one comparison when nothing changed).
    """

    __slots__ = ("_at", "_fire", "_next_deadline", "_wakeup")

    def __init__(self, next_deadline: Callable[[], float | None], fire: Callable[[float], None]) -> None:
        self._next_deadline = next_deadline
        self._fire = fire
        self._at = math.inf
        self._wakeup: anyio.Event | None = None

    def poke(self) -> None:
        deadline = self._next_deadline()
        if deadline is not None and deadline < self._at and self._wakeup is not None:
            self._wakeup.set()

    async def run(self) -> None:
        while True:
            deadline = self._next_deadline()
            self._at = math.inf if deadline is None else deadline
            self._wakeup = wakeup = anyio.Event()
            with anyio.move_on_after(None if deadline is None else max(0.0, deadline - anyio.current_time())):
                await wakeup.wait()
            self._fire(anyio.current_time())
