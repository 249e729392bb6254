"""Start a handler's task so that it runs at once, where Python allows it.

Every call and event a worker receives runs an agent handler in a task of its own, and most
handlers (an echo, a counter, a quick transformation) finish without ever waiting. On Python
3.12 and later such a task is started eagerly: its first step runs right away, inside the
runtime's message callback, and a handler that finishes there never goes through the event
loop's ready queue at all. The task is still a real task (``asyncio.current_task()``, timeouts
and anyio cancel scopes all see it) and runs in a context of its own. On Python 3.10 and 3.11,
which cannot start a task eagerly, the task is scheduled as usual.

(Emulating eager start on 3.11 by running the coroutine's first step by hand is not safe: code
in that first step would see no current task, which breaks ``asyncio.timeout`` and anyio.)
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any

EAGER = sys.version_info >= (3, 12)


def start_task(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """A task for ``coro`` on the running loop, eagerly started where the Python has it."""
    loop = asyncio.get_running_loop()
    if EAGER:
        return asyncio.Task(coro, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    return loop.create_task(coro)
