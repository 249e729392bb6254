"""A worker process for fault tests: hosts agent type argv[2] whose handler never answers."""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass

from autogen_core import MessageContext, RoutedAgent, message_handler, try_get_known_serializers_for_type

from io_backends import HttpWorkerAgentRuntime


@dataclass
class Text:
    text: str


class Stuck(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("never answers")

    @message_handler
    async def on_ping(self, message: Text, ctx: MessageContext) -> Text:
        await asyncio.sleep(3600)
        return message


async def main(address: str, agent_type: str) -> None:
    runtime = HttpWorkerAgentRuntime(address, keepalive_interval=None)
    runtime.add_message_serializer(try_get_known_serializers_for_type(Text))
    await runtime.register_factory(agent_type, lambda: Stuck())
    await runtime.start()
    print("ready", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
