"""A worker hosting agent type "reverse": answers every TextMessage with its content reversed."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autogen_core import MessageContext, RoutedAgent, message_handler
from shared import HOST_ADDRESS, TextMessage, serializers

from autogen_http_runtime.runtimes.http import HttpWorkerAgentRuntime


class ReverseAgent(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("Reverses text")

    @message_handler
    async def on_text(self, message: TextMessage, ctx: MessageContext) -> TextMessage:
        return TextMessage(message.content[::-1])


async def main() -> None:
    runtime = HttpWorkerAgentRuntime(HOST_ADDRESS)
    runtime.add_message_serializer(serializers())
    await runtime.register_factory("reverse", lambda: ReverseAgent())
    await runtime.start()
    print("worker 'reverse' ready", flush=True)
    await runtime.stop_when_signal()


if __name__ == "__main__":
    asyncio.run(main())
