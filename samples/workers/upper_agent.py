"""A worker hosting agent type "upper": answers every TextMessage in upper case."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from autogen_core import MessageContext, RoutedAgent, message_handler
from shared import HOST_ADDRESS, TextMessage, serializers

from autogen_http_runtime.runtimes.http import HttpWorkerAgentRuntime


class UpperAgent(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("Upper-cases text")

    @message_handler
    async def on_text(self, message: TextMessage, ctx: MessageContext) -> TextMessage:
        return TextMessage(message.content.upper())


async def main() -> None:
    runtime = HttpWorkerAgentRuntime(HOST_ADDRESS)
    runtime.add_message_serializer(serializers())
    await runtime.register_factory("upper", lambda: UpperAgent())
    await runtime.start()
    print("worker 'upper' ready", flush=True)
    await runtime.stop_when_signal()


if __name__ == "__main__":
    asyncio.run(main())
