"""Send one greeting to the "reverse" and "upper" agents (hosted by other processes) and print the answers."""

from __future__ import annotations

import asyncio

from autogen_core import AgentId
from shared import HOST_ADDRESS, TextMessage, serializers

from autogen_http_runtime.runtimes.http import HttpWorkerAgentRuntime

GREETING = "Hello distributed HTTP runtime!"


async def main() -> None:
    runtime = HttpWorkerAgentRuntime(HOST_ADDRESS)
    runtime.add_message_serializer(serializers())
    await runtime.start()
    try:
        reversed_, upper = await asyncio.gather(
            runtime.send_message(TextMessage(GREETING), AgentId("reverse", "default")),
            runtime.send_message(TextMessage(GREETING), AgentId("upper", "default")),
        )
        print(f"→ reverse → {reversed_.content}")
        print(f"→ upper → {upper.content}")
    finally:
        await runtime.stop()


if __name__ == "__main__":
    asyncio.run(main())
