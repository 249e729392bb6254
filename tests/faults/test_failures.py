"""Fail fast, never hang: dead workers, frozen workers, deadlines, host restarts."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from autogen_core import AgentId

from io_backends import (
    CallDeadlineExceededError,
    HostConnectionError,
    HttpAgentServer,
    TargetDisconnectedError,
)

from ..e2e._common import wait_until
from .conftest import Text, WorkerFactory

pytestmark = pytest.mark.anyio
SLOW_WORKER = Path(__file__).with_name("_slow_worker.py")


@pytest.fixture
def spawn() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=10)


def start_stuck_worker(procs: list[subprocess.Popen[str]], port: int, agent_type: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(SLOW_WORKER), f"http://127.0.0.1:{port}", agent_type],
        stdout=subprocess.PIPE,
        text=True,
    )
    procs.append(proc)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


async def calls_in_flight(runtime: object, agent_type: str, n: int) -> list[asyncio.Task[object]]:
    from io_backends import HttpWorkerAgentRuntime

    assert isinstance(runtime, HttpWorkerAgentRuntime)
    tasks = [asyncio.ensure_future(runtime.send_message(Text(str(i)), AgentId(agent_type, str(i)))) for i in range(n)]
    await asyncio.sleep(0.3)
    assert not any(t.done() for t in tasks)
    return tasks


async def test_calls_to_a_killed_worker_fail_within_two_seconds(
    server: HttpAgentServer, worker: WorkerFactory, spawn: list[subprocess.Popen[str]]
) -> None:
    proc = await anyio.to_thread.run_sync(start_stuck_worker, spawn, server.port, "stuck")
    caller = await worker(f"127.0.0.1:{server.port}")
    tasks = await calls_in_flight(caller, "stuck", 5)
    killed_at = time.monotonic()
    proc.send_signal(signal.SIGKILL)
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=2)
    assert time.monotonic() - killed_at < 2
    assert all(isinstance(r, TargetDisconnectedError) for r in results), results
    assert "stuck" not in server.service.engine.agent_types()


async def test_a_frozen_worker_is_found_by_keepalive(
    server: HttpAgentServer, worker: WorkerFactory, spawn: list[subprocess.Popen[str]]
) -> None:
    proc = await anyio.to_thread.run_sync(start_stuck_worker, spawn, server.port, "frozen")
    caller = await worker(f"127.0.0.1:{server.port}")
    tasks = await calls_in_flight(caller, "frozen", 3)
    frozen_at = time.monotonic()
    proc.send_signal(signal.SIGSTOP)  # alive, socket open, but silent: only pings can tell
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=5)
    elapsed = time.monotonic() - frozen_at
    assert all(isinstance(r, TargetDisconnectedError) for r in results), results
    assert elapsed < 2.5, elapsed  # keepalive 0.5 s + timeout 0.5 s on the test host


async def test_call_timeout_gives_deadline_exceeded_and_cancels_the_handler(
    server: HttpAgentServer, worker: WorkerFactory, spawn: list[subprocess.Popen[str]]
) -> None:
    await anyio.to_thread.run_sync(start_stuck_worker, spawn, server.port, "slow")
    caller = await worker(f"127.0.0.1:{server.port}", call_timeout=0.3)
    started = time.monotonic()
    with pytest.raises(CallDeadlineExceededError) as info:
        await asyncio.wait_for(caller.send_message(Text("x"), AgentId("slow", "k")), timeout=3)
    assert isinstance(info.value, TimeoutError)
    assert 0.25 < time.monotonic() - started < 1.5
    # The caller's $/cancelRequest reaches the host just after the caller gives up.
    assert await wait_until(lambda: server.service.engine.pending_calls() == [], timeout=1)


async def test_workers_reconnect_and_reregister_after_a_host_restart(worker: WorkerFactory) -> None:
    first = HttpAgentServer(port=0)
    first.start()
    port = first.port
    options = {"reconnect_initial_delay": 0.05, "reconnect_max_delay": 0.3}
    callee = await worker(f"127.0.0.1:{port}", echo="echo", **options)
    caller = await worker(f"127.0.0.1:{port}", **options)
    assert await caller.send_message(Text("before"), AgentId("echo", "k")) == Text("BEFORE")

    await first.stop(grace=1)
    with anyio.fail_after(5):
        while caller.connected or callee.connected:
            await anyio.sleep(0.02)
    started = time.monotonic()
    with pytest.raises(HostConnectionError):
        await caller.send_message(Text("while down"), AgentId("echo", "k"))
    assert time.monotonic() - started < 0.5  # fails fast, does not hang

    second = HttpAgentServer(port=port)
    second.start()
    try:
        with anyio.fail_after(10):
            while "echo" not in second.service.engine.agent_types() or not caller.connected:
                await anyio.sleep(0.02)
        assert await caller.send_message(Text("after"), AgentId("echo", "k")) == Text("AFTER")
    finally:
        await second.stop(grace=1)


async def test_a_call_can_wait_for_the_reconnection(worker: WorkerFactory) -> None:
    first = HttpAgentServer(port=0)
    first.start()
    port = first.port
    options = {"reconnect_initial_delay": 0.05, "reconnect_max_delay": 0.2}
    # The target lives on the caller's own worker: it is registered again before waiting calls go out.
    caller = await worker(f"127.0.0.1:{port}", echo="echo", reconnect_wait=10, **options)
    await first.stop(grace=1)
    with anyio.fail_after(5):
        while caller.connected:
            await anyio.sleep(0.02)
    pending = asyncio.ensure_future(caller.send_message(Text("patient"), AgentId("echo", "k")))
    await asyncio.sleep(0.3)
    assert not pending.done()
    second = HttpAgentServer(port=port)
    second.start()
    try:
        assert await asyncio.wait_for(pending, timeout=10) == Text("PATIENT")
    finally:
        await second.stop(grace=1)


async def test_start_waits_for_a_host_that_is_still_starting(worker: WorkerFactory) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    starting = asyncio.ensure_future(worker(f"127.0.0.1:{port}", echo="echo", connect_timeout=10))
    await asyncio.sleep(0.4)
    assert not starting.done()  # still trying: nothing listens yet
    server = HttpAgentServer(port=port)
    server.start()
    try:
        runtime = await asyncio.wait_for(starting, timeout=10)
        assert await runtime.send_message(Text("late"), AgentId("echo", "k")) == Text("LATE")
    finally:
        await server.stop(grace=1)


async def start_with_no_host(connect_timeout: float) -> tuple[int, float, str]:
    """start() a worker toward a loopback port nobody listens on: the port, the seconds it took to
    give up, and its error."""
    import socket

    from io_backends import HttpWorkerAgentRuntime

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runtime = HttpWorkerAgentRuntime(f"127.0.0.1:{port}", connect_timeout=connect_timeout)
    started = time.monotonic()
    with pytest.raises(OSError) as refused:
        await runtime.start()
    return port, time.monotonic() - started, str(refused.value)


async def test_start_gives_up_after_connect_timeout() -> None:
    port, spent, message = await start_with_no_host(0.5)
    assert spent < 2
    assert f"127.0.0.1:{port}" in message and "connect_timeout=" in message, message  # where, and what to do


async def test_start_keeps_trying_for_the_whole_connect_timeout() -> None:
    _, spent, _ = await start_with_no_host(3.0)
    assert spent >= 2.7, f"start() gave up after {spent:.1f}s of its 3s connect_timeout"
