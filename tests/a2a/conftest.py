"""Fixtures: a2a-sdk servers in processes of their own, and our host with two workers on loopback."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from io_backends import HttpAgentServer, HttpWorkerAgentRuntime
from io_backends.a2a import a2a_serializers

HERE = Path(__file__).resolve().parent
START_TIMEOUT = 60.0  # seconds for a server process to say it listens (a loaded 2-core machine imports slowly)
TEARDOWN_TIMEOUT = 10.0


class RemoteAgent:
    """An a2a-sdk server (``_remote_agent.py``) in another process, on a loopback port."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.process = subprocess.Popen(
            [sys.executable, str(HERE / "_remote_agent.py"), *args], stdout=subprocess.PIPE, text=True
        )
        line = _read_line(self.process, START_TIMEOUT)
        if not line.startswith("LISTENING "):
            self.stop()
            raise RuntimeError(f"the A2A test server {args} did not start: {line!r}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def log(self) -> dict[str, Any]:
        """What the server saw: ``started`` and ``cancelled`` task ids, ``authorization`` headers."""
        with urllib.request.urlopen(f"{self.url}/test/log", timeout=5) as response:
            return json.loads(response.read())  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(TEARDOWN_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(TEARDOWN_TIMEOUT)
        if self.process.stdout is not None:
            self.process.stdout.close()


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The process's first line of output, or "" if it prints none within ``timeout`` seconds."""
    import selectors

    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    return process.stdout.readline()


@contextlib.contextmanager
def running(*args: str) -> Iterator[RemoteAgent]:
    agent = RemoteAgent(*args)
    try:
        yield agent
    finally:
        agent.stop()


@pytest.fixture(scope="session")
def remote_agent() -> Iterator[RemoteAgent]:
    """The A2A 1.0 test agent, streaming (one process for the whole session)."""
    with running() as agent:
        yield agent


@pytest.fixture(scope="session")
def polled_agent() -> Iterator[RemoteAgent]:
    """The same agent with ``capabilities.streaming`` false: answers are followed with ``GetTask``."""
    with running("--no-streaming") as agent:
        yield agent


@pytest.fixture(scope="session")
def guarded_agent() -> Iterator[RemoteAgent]:
    """The agent behind a bearer token (``s3cret``), declared in its card."""
    with running("--token", "s3cret") as agent:
        yield agent


@pytest.fixture(scope="session")
def legacy_agent() -> Iterator[RemoteAgent]:
    """The agent with an A2A 0.3 card: a2a-sdk's client speaks 0.3 to it (``message/send``, ...)."""
    with running("--protocol", "0.3") as agent:
        yield agent


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def host() -> AsyncIterator[HttpAgentServer]:
    server = HttpAgentServer("127.0.0.1", port=0)
    server.start()
    try:
        yield server
    finally:
        with anyio.fail_after(TEARDOWN_TIMEOUT):
            await server.stop(grace=2)


@pytest.fixture
async def workers(host: HttpAgentServer) -> AsyncIterator[tuple[HttpWorkerAgentRuntime, HttpWorkerAgentRuntime]]:
    """(caller, callee): two workers of ``host``; the A2AAgent types are registered on the callee."""
    address = f"http://127.0.0.1:{host.port}"
    caller, callee = HttpWorkerAgentRuntime(address), HttpWorkerAgentRuntime(address)
    caller.add_message_serializer(a2a_serializers())
    started: list[HttpWorkerAgentRuntime] = []
    try:
        for worker in (caller, callee):
            with anyio.fail_after(10):
                await worker.start()
            started.append(worker)
        yield caller, callee
    finally:
        with anyio.fail_after(TEARDOWN_TIMEOUT):
            for worker in reversed(started):
                with contextlib.suppress(RuntimeError):  # already stopped by the test
                    await worker.stop()
