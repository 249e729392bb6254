"""The tasks a worker runs its agents' handlers in: started eagerly where Python allows it, and
kept alive while they run at no cost per task.

Every call and event a worker receives runs an agent handler in a task of its own, and most
handlers (an echo, a counter, a quick transformation) finish without ever waiting.

* On Python 3.12 and later such a task is started eagerly: its first step runs right away,
  inside the runtime's message callback, and a handler that finishes there never goes through
  the event loop's ready queue at all. It is still a real task (``asyncio.current_task()``,
  timeouts and anyio cancel scopes all see it) with a context of its own. On 3.10 and 3.11,
  which cannot start a task eagerly, it is scheduled as usual. (Emulating eager start there by
  running the coroutine's first step by hand is not safe: that step would see no current task,
  which breaks ``asyncio.timeout`` and anyio.)
* asyncio holds only weak references to tasks, so running ones must be held somewhere. A done
  callback per task to drop it again costs one more trip through the loop per handler;
  instead finished tasks are dropped in a sweep whenever the set has doubled.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

EAGER = sys.version_info >= (3, 12)
_MIN_SWEEP = 64


def start_task(coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
    """A task for ``coro`` on ``loop`` (which is running), eagerly started where Python has that."""
    if EAGER:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return asyncio.Task(coro, loop=loop)


class HandlerTasks:
    """The handler tasks of one runtime that may still be running."""

    __slots__ = ("_sweep_at", "_tasks")

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweep_at = _MIN_SWEEP

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in a task of its own."""
        task = start_task(coro, asyncio.get_running_loop())
        if task.done():
            return
        tasks = self._tasks
        tasks.add(task)
        if len(tasks) >= self._sweep_at:
            self._tasks = tasks = {t for t in tasks if not t.done()}
            self._sweep_at = max(_MIN_SWEEP, 2 * len(tasks))

    def cancel_now(self) -> None:
        """Cancel every task still running, without waiting for them (see :meth:`cancel_all`)."""
        for task in self._tasks:
            task.cancel()

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait for them to finish."""
        tasks, self._tasks = self._tasks, set()
        self._sweep_at = _MIN_SWEEP
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
