"""Fixtures for the end-to-end tests: a real host on a loopback port and real workers connected to it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from io_backends import HttpAgentServer, HttpWorkerAgentRuntime

from ._common import all_serializers

WorkerFactory = Callable[..., Awaitable[HttpWorkerAgentRuntime]]

TEARDOWN_TIMEOUT = 10.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def server() -> AsyncIterator[HttpAgentServer]:
    """A started host on 127.0.0.1 and a free port; stopped (with a bounded grace) at teardown."""
    host = HttpAgentServer("127.0.0.1", port=0)
    host.start()
    try:
        yield host
    finally:
        with anyio.fail_after(TEARDOWN_TIMEOUT):
            await host.stop(grace=2)


@pytest.fixture
def host_address(server: HttpAgentServer) -> str:
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def make_worker(host_address: str) -> AsyncIterator[WorkerFactory]:
    """``await make_worker(start=True, serializers=True, **kwargs)``: a worker connected to ``server``.

    Every worker made here that is still running at teardown is stopped.
    """
    made: list[HttpWorkerAgentRuntime] = []

    async def factory(*, start: bool = True, serializers: bool = True, **kwargs: Any) -> HttpWorkerAgentRuntime:
        worker = HttpWorkerAgentRuntime(kwargs.pop("address", host_address), **kwargs)
        if serializers:
            worker.add_message_serializer(all_serializers())
        made.append(worker)
        if start:
            with anyio.fail_after(10):
                await worker.start()
        return worker

    try:
        yield factory
    finally:
        with anyio.fail_after(TEARDOWN_TIMEOUT):
            for worker in reversed(made):
                with contextlib.suppress(RuntimeError):  # already stopped by the test
                    await worker.stop()
