"""The host itself: served under trio in another thread, by serve() on asyncio, and its plain-HTTP endpoints."""

from __future__ import annotations

import asyncio
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import sniffio
from autogen_core import AgentId, TopicId, TypeSubscription

from io_backends import HttpAgentServer, HttpWorkerAgentRuntime
from io_backends.host.selectors_host import SelectorsHost
from io_backends.sansio import Phase
from io_backends.worker import HostRejectedError

from ._common import Answer, Ask, Block, BlockingAgent, EchoAgent, Note, Probe, all_serializers, http_call, wait_until
from .conftest import WorkerFactory

pytestmark = pytest.mark.anyio


class TrioHostThread:
    """``HttpAgentServer.serve()`` under ``anyio.run(..., backend="trio")`` in a background thread."""

    def __init__(self) -> None:
        self._port: queue.Queue[int | None] = queue.Queue()
        self._stop = threading.Event()
        self.library: str | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="trio-host", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.library = sniffio.current_async_library()
            server = HttpAgentServer("127.0.0.1", port=0)
            async with anyio.create_task_group() as tg:
                self._port.put(await tg.start(server.serve))
                deadline = anyio.current_time() + 60  # never outlive a stuck test for long
                while not self._stop.is_set() and anyio.current_time() < deadline:
                    await anyio.sleep(0.02)
                with anyio.fail_after(10):
                    await server.stop(grace=2)

        try:
            anyio.run(main, backend="trio")
        except BaseException as exc:  # reported to the test at teardown
            self.error = exc
            self._port.put(None)

    def start(self) -> int:
        self.thread.start()
        port = self._port.get(timeout=10)
        assert port is not None, f"the trio host failed to start: {self.error!r}"
        return port

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=15)


@pytest.fixture
def trio_host() -> Iterator[tuple[TrioHostThread, int]]:
    host = TrioHostThread()
    port = host.start()
    try:
        yield host, port
    finally:
        host.stop()
        assert not host.thread.is_alive(), "the trio host did not stop"
        assert host.error is None, repr(host.error)


async def check_plain_http_endpoints(port: int) -> None:
    """/healthz and a JSON-RPC agent.call over POST /v1/rpc, to an agent on a connected worker."""
    status, health = await http_call(port, "GET", "/healthz")
    assert status == 200
    assert health["status"] == "ok" and health["agent_types"] >= 1 and health["connections"] >= 2

    call: dict[str, Any] = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "agent.call",
        "params": {
            "target": {"type": "echo", "key": "http"},
            "data_type": "Ask",
            "data_content_type": "application/json",
            "data": {"text": "over http"},
        },
    }
    status, reply = await http_call(port, "POST", "/v1/rpc", call)
    assert status == 200
    assert reply["jsonrpc"] == "2.0" and reply["id"] == 1, reply
    assert reply["result"]["data_type"] == "Answer"
    assert reply["result"]["data"] == {"text": "http:ptth revo"}

    # Errors come back as JSON-RPC errors, in a batch too.
    unknown = {**call, "id": "u", "params": {**call["params"], "target": {"type": "nobody", "key": "k"}}}
    status, replies = await http_call(port, "POST", "/v1/rpc", [unknown, {**call, "id": 2}])
    assert status == 200
    by_id = {r["id"]: r for r in replies}
    assert by_id["u"]["error"]["code"] == -32001
    assert by_id[2]["result"]["data"] == {"text": "http:ptth revo"}


async def test_trio_host_serves_asyncio_workers(trio_host: tuple[TrioHostThread, int]) -> None:
    host, port = trio_host
    assert host.library == "trio"
    workers: list[HttpWorkerAgentRuntime] = []
    try:
        with anyio.fail_after(30):
            for _ in range(2):
                worker = HttpWorkerAgentRuntime(f"127.0.0.1:{port}")  # gRPC-style address
                worker.add_message_serializer(all_serializers())
                await worker.start()
                workers.append(worker)
            callee, caller = workers
            await callee.register_factory("echo", EchoAgent)
            await callee.add_subscription(TypeSubscription("trio-news", "echo"))

            assert await caller.send_message(Ask("trio"), AgentId("echo", "t")) == Answer("t:oirt")
            answers = await asyncio.gather(
                *(caller.send_message(Ask(str(i)), AgentId("echo", "t")) for i in range(100))
            )
            assert answers == [Answer(f"t:{str(i)[::-1]}") for i in range(100)]

            for i in range(50):
                await caller.publish_message(Note("n", seq=i), TopicId("trio-news", "t"))
            agent = await callee.try_get_underlying_agent_instance(AgentId("echo", "t"), EchoAgent)
            assert await wait_until(lambda: len(agent.notes) == 50, 10), len(agent.notes)
            assert [n.seq for n in agent.notes] == list(range(50))

            await check_plain_http_endpoints(port)
    finally:
        with anyio.fail_after(10):
            for worker in workers:
                await worker.stop()


async def test_plain_http_endpoints_on_the_asyncio_host(make_worker: WorkerFactory, server: HttpAgentServer) -> None:
    with anyio.fail_after(30):
        callee = await make_worker()
        await make_worker()
        await callee.register_factory("echo", EchoAgent)
        started = time.perf_counter()
        await check_plain_http_endpoints(server.port)
        assert time.perf_counter() - started < 10
        status, error = await http_call(server.port, "GET", "/nowhere")
        assert status == 404 and error["error"]["status"] == 404
        status, error = await http_call(server.port, "GET", "/v1/rpc")
        assert status == 405


async def test_serve_on_asyncio_uses_the_asyncio_driver_and_stops_either_way() -> None:
    """``serve()`` in an anyio task group on asyncio: stop() ends it, and so does cancelling it."""
    for ending in ("stop", "cancel"):
        server = HttpAgentServer("127.0.0.1", port=0)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                port = await tg.start(server.serve)
                assert sniffio.current_async_library() == "asyncio"
                worker = HttpWorkerAgentRuntime(f"127.0.0.1:{port}")
                worker.add_message_serializer(all_serializers())
                await worker.start()
                try:
                    await worker.register_factory("echo", EchoAgent)
                    assert await worker.send_message(Ask("io"), AgentId("echo", "k")) == Answer("k:oi")
                    assert server.service.connection_count == 1
                    # the asyncio driver serves it (a protocol per socket, no task per connection)
                    phases = [conn.phase for conn in server.service.hub.connections()]
                    assert phases == [Phase.CHANNEL]
                    await check_plain_http_endpoints(port)
                finally:
                    await worker.stop()
                if ending == "stop":
                    await server.stop(grace=2)
                else:
                    tg.cancel_scope.cancel()
        assert server.service.connection_count == 0
        assert list(server.service.engine.clients()) == []


@pytest.fixture
def selectors_host() -> Iterator[SelectorsHost]:
    """A :class:`SelectorsHost` serving from a thread of its own (a plain selectors loop, no asyncio)."""
    host = SelectorsHost(auth_token="sel-token")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            host.serve_forever()
        except BaseException as exc:  # reported at teardown
            errors.append(exc)

    thread = threading.Thread(target=run, name="selectors-host", daemon=True)
    thread.start()
    try:
        yield host
    finally:
        host.stop()
        thread.join(timeout=10)
        assert not thread.is_alive(), "the selectors host did not stop"
        assert errors == []


async def test_selectors_host_serves_ordinary_workers(selectors_host: SelectorsHost) -> None:
    """Workers call (small and 1 MB messages, concurrently), publish, and lose a peer mid-call through
    the selectors driver exactly as through HttpAgentServer; its plain-HTTP endpoints answer too."""
    address = f"http://127.0.0.1:{selectors_host.port}"
    workers: list[HttpWorkerAgentRuntime] = []
    try:
        with anyio.fail_after(30):
            for _ in range(3):
                worker = HttpWorkerAgentRuntime(address, auth_token="sel-token")
                worker.add_message_serializer(all_serializers())
                await worker.start()
                workers.append(worker)
            callee, caller, doomed = workers
            await callee.register_factory("echo", EchoAgent)
            await callee.add_subscription(TypeSubscription("sel-news", "echo"))
            probes = {"t": Probe()}
            await doomed.register_factory("blocker", lambda: BlockingAgent(probes))

            calls = (caller.send_message(Ask(str(i)), AgentId("echo", "s")) for i in range(200))
            answers = await asyncio.gather(*calls)
            assert answers == [Answer(f"s:{str(i)[::-1]}") for i in range(200)]
            big = "x" * 1_000_000 + "y"  # many partial sends each way
            assert await caller.send_message(Ask(big), AgentId("echo", "b")) == Answer("b:" + big[::-1])

            for i in range(50):
                await caller.publish_message(Note("n", seq=i), TopicId("sel-news", "s"))
            agent = await callee.try_get_underlying_agent_instance(AgentId("echo", "s"), EchoAgent)
            assert await wait_until(lambda: len(agent.notes) == 50, 10), len(agent.notes)
            assert [n.seq for n in agent.notes] == list(range(50))

            blocked = asyncio.ensure_future(caller.send_message(Block("t"), AgentId("blocker", "k")))
            await asyncio.wait_for(probes["t"].started.wait(), 5)
            await doomed.stop()  # its connection goes: the call pending at it fails at once
            workers.remove(doomed)
            with pytest.raises(Exception, match="the worker hosting the target went away"):
                await asyncio.wait_for(blocked, 5)

            with pytest.raises(HostRejectedError, match=r"HTTP 401.*pass the host.s token as auth_token="):
                intruder = HttpWorkerAgentRuntime(address, reconnect=False)
                await intruder.start()
            status, health = await http_call(selectors_host.port, "GET", "/healthz")
            assert status == 200 and health["connections"] >= 2
    finally:
        with anyio.fail_after(10):
            for worker in workers:
                await worker.stop()
    assert await wait_until(lambda: selectors_host.service.connection_count == 0, 5)
    assert list(selectors_host.service.engine.clients()) == []


def test_selectors_host_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "io_backends.host.selectors_host", "--help"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0 and "selectors" in done.stdout
