from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from autogen_core import MessageContext, RoutedAgent, message_handler, try_get_known_serializers_for_type

from io_backends import HttpAgentServer, HttpAgentService, HttpWorkerAgentRuntime


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass
class Text:
    text: str


class Echo(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("echo")

    @message_handler
    async def on_text(self, message: Text, ctx: MessageContext) -> Text:
        return Text(message.text.upper())


@pytest.fixture
async def server() -> AsyncIterator[HttpAgentServer]:
    srv = HttpAgentServer(port=0, service=HttpAgentService(keepalive_interval=0.5, keepalive_timeout=0.5))
    srv.start()
    yield srv
    await srv.stop(grace=1)


WorkerFactory = Callable[..., Awaitable[HttpWorkerAgentRuntime]]


@pytest.fixture
async def worker() -> AsyncIterator[WorkerFactory]:
    started: list[HttpWorkerAgentRuntime] = []

    async def make(address: str, *, echo: str | None = None, **kwargs: Any) -> HttpWorkerAgentRuntime:
        runtime = HttpWorkerAgentRuntime(address, **kwargs)
        runtime.add_message_serializer(try_get_known_serializers_for_type(Text))
        if echo is not None:
            await runtime.register_factory(echo, lambda: Echo())
        await runtime.start()
        started.append(runtime)
        return runtime

    yield make
    for runtime in started:
        try:
            await runtime.stop()
        except RuntimeError:
            pass
