"""Errors that tell the user what to do, over real sockets and in real processes.

A worker that cannot reach its host, TLS on one side only, a message over the host's size limit,
a host shutdown, and a program that forgets ``stop()``: each ends in one clear error (or one
warning), never a long traceback, a bare "connection lost" or asyncio's complaints.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
import trustme
from autogen_core import AgentId, MessageContext, RoutedAgent, message_handler, try_get_known_serializers_for_type
from wsproto.events import AcceptConnection

from io_backends import (
    HostConnectionError,
    HostTlsError,
    HttpAgentServer,
    HttpAgentService,
    HttpWorkerAgentRuntime,
    PayloadTooLargeError,
    TargetDisconnectedError,
)

from .conftest import Text

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_script(source: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(source)], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


# ------------------------------------------------------------------------------ no host there


async def test_unreachable_host_is_one_line_naming_the_address_and_the_wait() -> None:
    port = free_port()
    runtime = HttpWorkerAgentRuntime(f"127.0.0.1:{port}", connect_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(HostConnectionError) as caught:
        await runtime.start()
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert message.startswith(f"cannot reach the host at 127.0.0.1:{port} (tried for 0.")
    assert "connection refused" in message and "a host must be running there" in message
    assert f"autogen-http-host --port {port}" in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert isinstance(caught.value, ConnectionError)  # `except OSError` / `ConnectionError` still catch it


def test_unreachable_host_in_a_script_is_a_short_traceback_ending_in_that_line() -> None:
    port = free_port()
    result = run_script(
        f"""
        import asyncio
        from io_backends import HttpWorkerAgentRuntime

        async def main():
            await HttpWorkerAgentRuntime("127.0.0.1:{port}", connect_timeout=0.3).start()

        asyncio.run(main())
        """
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(f"io_backends.HostConnectionError: cannot reach the host at 127.0.0.1:{port}")
    assert "During handling of the above exception" not in result.stderr
    assert "ConnectionRefusedError" not in result.stderr
    assert len(lines) <= 25, result.stderr  # asyncio.run's own frames, the script's, start(): no chained traces


# ------------------------------------------------------------------------------ TLS on one side only


@pytest.fixture(scope="module")
def certificate_authority() -> Iterator[trustme.CA]:
    yield trustme.CA()


@pytest.fixture
async def tls_server(certificate_authority: trustme.CA) -> AsyncIterator[HttpAgentServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(context)
    server = HttpAgentServer(port=0, ssl_context=context)
    server.start()
    yield server
    await server.stop(grace=1)


async def test_tls_address_for_a_plain_host_says_so(server: HttpAgentServer, certificate_authority: trustme.CA) -> None:
    context = ssl.create_default_context()
    certificate_authority.configure_trust(context)
    for scheme in ("https", "wss"):
        runtime = HttpWorkerAgentRuntime(f"{scheme}://127.0.0.1:{server.port}", ssl_context=context)
        started = time.monotonic()
        with pytest.raises(HostTlsError) as caught:
            await runtime.start()
        assert time.monotonic() - started < 2  # an answer, not an absence: no retrying until connect_timeout
        assert f"the host at 127.0.0.1:{server.port} does not serve TLS" in str(caught.value)
        assert "use an http:// or ws:// address" in str(caught.value)
        assert isinstance(caught.value, ssl.SSLError)


async def test_plain_address_for_a_tls_host_says_so(tls_server: HttpAgentServer) -> None:
    for scheme in ("http", "ws"):
        runtime = HttpWorkerAgentRuntime(f"{scheme}://127.0.0.1:{tls_server.port}")
        started = time.monotonic()
        with pytest.raises(HostTlsError) as caught:
            await runtime.start()
        assert time.monotonic() - started < 2
        assert "it serves TLS, so use an https:// or wss:// address" in str(caught.value)


async def test_untrusted_certificate_says_what_to_pass(tls_server: HttpAgentServer) -> None:
    runtime = HttpWorkerAgentRuntime(f"https://127.0.0.1:{tls_server.port}", ssl_context=ssl.create_default_context())
    with pytest.raises(HostTlsError) as caught:
        await runtime.start()
    assert "serves a TLS certificate this worker does not trust" in str(caught.value)
    assert "ssl_context=" in str(caught.value)


# ------------------------------------------------------------------------------ the size limit


class Echo(RoutedAgent):
    def __init__(self) -> None:
        super().__init__("echo")

    @message_handler
    async def on_text(self, message: Text, ctx: MessageContext) -> Text:
        return Text(str(len(message.text)))


@contextlib.asynccontextmanager
async def echo_pair(service: HttpAgentService) -> AsyncIterator[HttpWorkerAgentRuntime]:
    """A host running ``service``, a worker hosting "echo" and a caller (yielded), all stopped after."""
    server = HttpAgentServer(port=0, service=service)
    server.start()
    address = f"127.0.0.1:{server.port}"
    callee = HttpWorkerAgentRuntime(address)
    caller = HttpWorkerAgentRuntime(address, reconnect_wait=5)
    try:
        for runtime in (callee, caller):
            runtime.add_message_serializer(try_get_known_serializers_for_type(Text))
        await callee.register_factory("echo", Echo)
        await callee.start()
        await caller.start()
        with anyio.fail_after(10):
            yield caller
    finally:
        for runtime in (caller, callee):
            with contextlib.suppress(RuntimeError):
                await runtime.stop()
        await server.stop(grace=1)


async def test_a_message_over_the_hosts_announced_limit_is_refused_before_it_is_sent() -> None:
    """The host announces its limit on connect (X-Max-Message-Size): the worker refuses a larger
    message itself, with PayloadTooLargeError, and the connection stays up."""
    async with echo_pair(HttpAgentService(max_message_size=64 * 1024)) as caller:
        with pytest.raises(PayloadTooLargeError) as caught:
            await caller.send_message(Text("x" * 100_000), AgentId("echo", "k"))
        message = str(caught.value)
        assert "exceeds the limit of 65536" in message and "the host's limit" in message
        assert "max_message_size" in message
        assert caller.connected
        assert await caller.send_message(Text("small"), AgentId("echo", "k")) == Text("5")


async def test_a_close_for_an_oversized_message_surfaces_as_payload_too_large() -> None:
    """A host that does not announce its limit (an older or foreign one) closes with 1009: the
    calls pending on that connection fail with PayloadTooLargeError naming max_message_size=."""
    service = HttpAgentService(max_message_size=64 * 1024)
    service.hub.channel_accept = lambda ws: ws.send(AcceptConnection())  # type: ignore[method-assign]
    async with echo_pair(service) as caller:
        with pytest.raises(PayloadTooLargeError) as caught:
            await caller.send_message(Text("x" * 100_000), AgentId("echo", "k"))
        assert "closed the connection (1009)" in str(caught.value)
        assert "max_message_size=" in str(caught.value)
        # it reconnects by itself, and small messages go through again
        assert await caller.send_message(Text("small"), AgentId("echo", "k")) == Text("5")


# ------------------------------------------------------------------------------ host shutdown


class Waiter(RoutedAgent):
    def __init__(self, started: asyncio.Event) -> None:
        super().__init__("waiter")
        self.started = started

    @message_handler
    async def on_text(self, message: Text, ctx: MessageContext) -> Text:
        self.started.set()
        await asyncio.sleep(30)
        return Text("late")


async def test_host_shutdown_fails_pending_calls_with_host_connection_error() -> None:
    """What the README promises: when the host goes away, pending calls fail with
    HostConnectionError (the target worker, which goes with it, is not to blame)."""
    server = HttpAgentServer(port=0)
    server.start()
    address = f"127.0.0.1:{server.port}"
    started = asyncio.Event()
    callee = HttpWorkerAgentRuntime(address, reconnect=False)  # connected first, as the target usually is
    caller = HttpWorkerAgentRuntime(address, reconnect=False)
    for runtime in (callee, caller):
        runtime.add_message_serializer(try_get_known_serializers_for_type(Text))
    await callee.register_factory("waiter", lambda: Waiter(started))
    await callee.start()
    await caller.start()
    try:
        with anyio.fail_after(10):
            call = asyncio.ensure_future(caller.send_message(Text("hi"), AgentId("waiter", "k")))
            await started.wait()
            await server.stop(grace=2)
            with pytest.raises(HostConnectionError) as caught:
                await call
        assert not isinstance(caught.value, TargetDisconnectedError)
        assert "the host shut down (close 1001)" in str(caught.value)
    finally:
        await caller.stop()
        await callee.stop()


# ------------------------------------------------------------------------------ a forgotten stop()


def test_forgetting_stop_gives_one_warning_and_no_asyncio_noise() -> None:
    """A program that ends its event loop with workers still connected and handlers still
    running: no "coroutine was never awaited", no "Task was destroyed", no traceback; one warning
    per worker saying what to call."""
    result = run_script(
        """
        import asyncio
        from dataclasses import dataclass
        from autogen_core import (
            AgentId, MessageContext, RoutedAgent, TopicId, default_subscription, message_handler,
            try_get_known_serializers_for_type,
        )
        from io_backends import HttpAgentServer, HttpWorkerAgentRuntime

        @dataclass
        class Msg:
            text: str

        @default_subscription
        class Slow(RoutedAgent):
            def __init__(self):
                super().__init__("slow")

            @message_handler
            async def on_msg(self, message: Msg, ctx: MessageContext) -> Msg:
                await asyncio.sleep(0.05)
                return message

        async def main():
            host = HttpAgentServer(port=0)
            host.start()
            workers = [HttpWorkerAgentRuntime(f"127.0.0.1:{host.port}") for _ in range(2)]
            for worker in workers:
                worker.add_message_serializer(try_get_known_serializers_for_type(Msg))
                await worker.start()
            await Slow.register(workers[0], "slow", Slow)
            for _ in range(1000):
                await workers[1].publish_message(Msg("event"), TopicId("default", "k"))
            loop = asyncio.get_running_loop()
            calls = [loop.create_task(workers[1].send_message(Msg("call"), AgentId("slow", "k"))) for _ in range(20)]
            await asyncio.sleep(0)
            # ... and the program ends here, without stopping anything

        asyncio.run(main())
        """
    )
    assert result.returncode == 0, result.stderr
    for noise in ("never awaited", "Task was destroyed", "Traceback", "Task exception was never retrieved"):
        assert noise not in result.stderr, result.stderr[-3000:]
    warnings = [line for line in result.stderr.splitlines() if "was not stopped before its event loop ended" in line]
    assert len(warnings) == 2, result.stderr[-3000:]
    assert "call `await runtime.stop()`" in warnings[0]
