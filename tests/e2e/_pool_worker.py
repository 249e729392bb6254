"""A worker process of a shared agent type's pool: ``python _pool_worker.py ADDRESS NAME``.

It hosts ``counter`` with ``shared_agent_types=True`` under the client id NAME. Each ``counter``
instance keeps in-memory state (how many ``Bump`` calls and ``Tick`` events it had), so a test can
tell which worker answers a key and whether its state survived. ``Hold`` never answers (for calls
in flight when the worker is killed). Prints ``ready`` once registered.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from autogen_core import (
    MessageContext,
    RoutedAgent,
    message_handler,
    try_get_known_serializers_for_type,
    type_subscription,
)

from io_backends import HttpWorkerAgentRuntime


@dataclass
class Bump:
    pass


@dataclass
class Hold:
    pass


@dataclass
class Tick:
    pass


@dataclass
class Count:
    worker: str
    key: str
    bumps: int
    ticks: int
    worker_ticks: int
    """Tick events every instance of this worker had (an event delivered twice would show here)."""


MESSAGES = (Bump, Hold, Tick, Count)
worker_ticks = 0


@type_subscription(topic_type="ticks")
class Counter(RoutedAgent):
    def __init__(self, worker: str) -> None:
        super().__init__("counts its calls and events")
        self.worker = worker
        self.bumps = 0
        self.ticks = 0

    def count(self) -> Count:
        return Count(self.worker, self.id.key, self.bumps, self.ticks, worker_ticks)

    @message_handler
    async def on_bump(self, message: Bump, ctx: MessageContext) -> Count:
        self.bumps += 1
        return self.count()

    @message_handler
    async def on_hold(self, message: Hold, ctx: MessageContext) -> Count:
        await asyncio.sleep(3600)
        return self.count()

    @message_handler
    async def on_tick(self, message: Tick, ctx: MessageContext) -> None:
        global worker_ticks
        worker_ticks += 1
        self.ticks += 1


async def main(address: str, name: str) -> None:
    runtime = HttpWorkerAgentRuntime(address, client_id=name, shared_agent_types=True, keepalive_interval=None)
    for message in MESSAGES:
        runtime.add_message_serializer(try_get_known_serializers_for_type(message))
    await runtime.start()
    await Counter.register(runtime, "counter", lambda: Counter(name))
    print("ready", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
